/* serial.c: an 8250 UART on COM1 (0x3f8, IRQ 4): console output to stdout, input from stdin */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <termios.h>
#include <unistd.h>

#include "devices/dev.h"

#define COM1_BASE 0x3f8
#define RX_SIZE	  256

/* register offsets and bits (the 8250/16550 layout Linux's 8250 driver expects) */
enum { R_DATA, R_IER, R_IIR, R_LCR, R_MCR, R_LSR, R_MSR, R_SCR };
#define IER_RDI	 0x01
#define IER_THRI 0x02
#define IIR_NONE 0x01
#define IIR_THRI 0x02
#define IIR_RDI	 0x04
#define IIR_FIFO 0xc0
#define FCR_FIFO 0x01
#define LCR_DLAB 0x80
#define MCR_LOOP 0x10
#define LSR_DR	 0x01
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define MSR_IDLE 0xb0 /* DCD, DSR, CTS: a modem that is always there */

struct serial {
	pthread_mutex_t lock;
	uint8_t ier, lcr, mcr, scr, fcr, dll, dlm;
	bool thr_pending; /* THR-empty interrupt owed to the driver */
	uint8_t rx[RX_SIZE];
	unsigned rx_head, rx_len;
	struct dev_irq irq;
	int vm_fd;
	pthread_t reader;
	bool has_reader;
	int stop_fd;  /* wakes the reader from poll() for teardown */
	int stop_efd; /* the VM's: readable once it stops (dev_ctx) */
	/* Flow control: stdin is not read while the FIFO is full (or the UART loops back),
	 * so no input is lost; the guest's reads wake the reader again. */
	pthread_cond_t rx_room;
	bool reader_waits; /* the reader waits on rx_room */
	bool stopping;	   /* teardown: the reader must return */
};

/* Raw mode is process-wide: what to restore, at teardown or at exit. */
static struct termios serial_saved_tio;
static bool serial_tio_saved;

static void serial_restore_tty(void)
{
	if (serial_tio_saved)
		tcsetattr(STDIN_FILENO, TCSANOW, &serial_saved_tio);
}

static void serial_raw_tty(void)
{
	struct termios t;

	if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &serial_saved_tio) < 0)
		return;
	t = serial_saved_tio;
	cfmakeraw(&t);
	t.c_lflag |= ISIG; /* Ctrl-C still ends ufvm */
	t.c_oflag |= OPOST | ONLCR;
	if (tcsetattr(STDIN_FILENO, TCSANOW, &t) < 0)
		return;
	serial_tio_saved = 1;
	/* SIGINT, SIGTERM and SIGHUP stop the VM the orderly way (vmm_signals_init), and
	 * teardown restores the terminal; atexit covers an exit on any other path */
	atexit(serial_restore_tty);
}

static uint8_t serial_iir(const struct serial *s)
{
	uint8_t fifo = (s->fcr & FCR_FIFO) ? IIR_FIFO : 0;

	if ((s->ier & IER_RDI) && s->rx_len)
		return IIR_RDI | fifo;
	if ((s->ier & IER_THRI) && s->thr_pending)
		return IIR_THRI | fifo;
	return IIR_NONE | fifo;
}

/* Loopback bytes that find the FIFO full are lost, as in a hardware overrun; the reader
 * never pushes into a full FIFO. */
static void serial_rx_push(struct serial *s, uint8_t c)
{
	if (s->rx_len < RX_SIZE)
		s->rx[(s->rx_head + s->rx_len++) % RX_SIZE] = c;
}

/* Whether a reader that found the FIFO full (or the UART in loopback) may go on. It waits
 * for half the FIFO, not for one byte: a cross-thread wake-up per byte costs too much. */
static bool serial_rx_open(const struct serial *s)
{
	return !(s->mcr & MCR_LOOP) && s->rx_len <= RX_SIZE / 2;
}

static void serial_out(struct serial *s, uint8_t c)
{
	if (s->mcr & MCR_LOOP) {
		serial_rx_push(s, c);
		return;
	}
	/* a reader that stops reading holds this vCPU only until the VM's stop; a byte
	 * that cannot be written is lost, as on a UART with nothing attached */
	(void)dev_console_write(&c, 1, s->stop_efd, NULL, NULL);
}

static void serial_write(struct serial *s, uint64_t off, uint8_t v)
{
	switch (off) {
	case R_DATA:
		if (s->lcr & LCR_DLAB) {
			s->dll = v;
			break;
		}
		serial_out(s, v);
		s->thr_pending = true; /* the byte left at once: THR is empty again */
		break;
	case R_IER:
		if (s->lcr & LCR_DLAB) {
			s->dlm = v;
			break;
		}
		if ((v & IER_THRI) && !(s->ier & IER_THRI))
			s->thr_pending = true;
		s->ier = v & 0x0f;
		break;
	case R_IIR:
		s->fcr = v;
		if (v & 0x02) /* clear the receive FIFO */
			s->rx_len = 0;
		break;
	case R_LCR:
		s->lcr = v;
		break;
	case R_MCR:
		s->mcr = v & 0x1f;
		break;
	case R_SCR:
		s->scr = v;
		break;
	default: /* LSR and MSR are read-only */
		break;
	}
}

static uint8_t serial_read(struct serial *s, uint64_t off)
{
	uint8_t v;

	switch (off) {
	case R_DATA:
		if (s->lcr & LCR_DLAB)
			return s->dll;
		if (!s->rx_len)
			return 0;
		v = s->rx[s->rx_head];
		s->rx_head = (s->rx_head + 1) % RX_SIZE;
		s->rx_len--;
		return v;
	case R_IER:
		return (s->lcr & LCR_DLAB) ? s->dlm : s->ier;
	case R_IIR:
		v = serial_iir(s);
		if ((v & 0x0f) == IIR_THRI)
			s->thr_pending = false; /* reading IIR acknowledges THR empty */
		return v;
	case R_LCR:
		return s->lcr;
	case R_MCR:
		return s->mcr;
	case R_LSR:
		return LSR_THRE | LSR_TEMT | (s->rx_len ? LSR_DR : 0);
	case R_MSR:
		if (s->mcr & MCR_LOOP) /* loopback: the modem lines echo MCR */
			return (uint8_t)(((s->mcr & 0x0c) << 4) | ((s->mcr & 0x01) << 5) |
					 ((s->mcr & 0x02) << 3));
		return MSR_IDLE;
	default:
		return s->scr;
	}
}

static void serial_io(void *dev, uint64_t off, uint8_t *data, unsigned size, bool write)
{
	struct serial *s = dev;
	uint8_t before, after;

	pthread_mutex_lock(&s->lock);
	before = serial_iir(s);
	for (unsigned i = 0; i < size; i++) { /* a wide access touches consecutive registers */
		if (off + i > R_SCR)
			break;
		if (write)
			serial_write(s, off + i, data[i]);
		else
			data[i] = serial_read(s, off + i);
	}
	after = serial_iir(s);
	if (s->reader_waits && serial_rx_open(s))
		pthread_cond_signal(&s->rx_room);
	pthread_mutex_unlock(&s->lock);
	if (!(after & IIR_NONE) && after != before)
		dev_irq_raise(&s->irq);
}

/* Wait until stdin has input (true) or teardown asks the reader to return (false). */
static bool serial_wait_input(struct serial *s)
{
	struct pollfd p[2] = {{.fd = STDIN_FILENO, .events = POLLIN},
			      {.fd = s->stop_fd, .events = POLLIN}};

	for (;;) {
		if (poll(p, 2, -1) < 0 && errno != EINTR)
			return false;
		if (p[1].revents)
			return false;
		if (p[0].revents)
			return true;
	}
}

/*
 * stdin into the receive FIFO. Input read but not yet pushed stays in buf: when the
 * FIFO is full (or the UART is in loopback, its receiver cut off from the line) the
 * reader stops reading stdin until the guest has drained half the FIFO, so a program
 * piping input into ufvm never loses any.
 */
static void *serial_reader(void *arg)
{
	struct serial *s = arg;
	uint8_t buf[64];
	ssize_t pos = 0, len = 0;

	for (;;) {
		bool raise_irq;

		if (pos == len) {
			if (!serial_wait_input(s))
				break;
			len = read(STDIN_FILENO, buf, sizeof(buf));
			pos = 0;
			if (len <= 0) {
				if (len < 0 && (errno == EINTR || errno == EAGAIN)) {
					len = 0;
					continue;
				}
				break; /* EOF: the guest simply gets no more input */
			}
		}
		pthread_mutex_lock(&s->lock);
		if (s->rx_len == RX_SIZE || (s->mcr & MCR_LOOP)) {
			s->reader_waits = true;
			while (!s->stopping && !serial_rx_open(s))
				pthread_cond_wait(&s->rx_room, &s->lock);
			s->reader_waits = false;
		}
		if (s->stopping) {
			pthread_mutex_unlock(&s->lock);
			break;
		}
		while (pos < len && s->rx_len < RX_SIZE)
			serial_rx_push(s, buf[pos++]);
		raise_irq = s->ier & IER_RDI;
		pthread_mutex_unlock(&s->lock);
		if (raise_irq)
			dev_irq_raise(&s->irq);
	}
	return NULL;
}

static int serial_setup(struct dev_ctx *c, void **state, const char **why)
{
	struct serial *s = calloc(1, sizeof(*s));
	int err;

	if (!s) {
		*why = "out of memory";
		return -ENOMEM;
	}
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->rx_room, NULL);
	s->vm_fd = c->vm_fd;
	s->stop_efd = c->stop_efd;
	s->stop_fd = eventfd(0, EFD_CLOEXEC);
	if (s->stop_fd < 0) {
		err = -errno;
		*why = "eventfd";
		goto err_free;
	}
	err = dev_irq_open(&s->irq, c->vm_fd, DEV_IRQ_COM1);
	if (err) {
		*why = "KVM_IRQFD for IRQ 4";
		goto err_close;
	}
	err = dev_bus_add(&c->bus, DEV_PIO, COM1_BASE, 8, serial_io, s, "serial");
	if (err) {
		*why = "I/O ports 0x3f8-0x3ff";
		goto err_irq;
	}
	serial_raw_tty();
	s->has_reader = pthread_create(&s->reader, NULL, serial_reader, s) == 0;
	if (s->has_reader)
		pthread_setname_np(s->reader, "ufvm-serial");
	*state = s;
	return 0;

err_irq:
	dev_irq_close(&s->irq, c->vm_fd);
err_close:
	close(s->stop_fd);
err_free:
	pthread_cond_destroy(&s->rx_room);
	pthread_mutex_destroy(&s->lock);
	free(s);
	return err;
}

static void serial_teardown(void *state)
{
	struct serial *s = state;
	uint64_t one = 1;

	if (s->has_reader) {
		pthread_mutex_lock(&s->lock); /* wakes it from waiting for room in the FIFO */
		s->stopping = true;
		pthread_cond_broadcast(&s->rx_room);
		pthread_mutex_unlock(&s->lock);
		if (write(s->stop_fd, &one, sizeof(one)) == sizeof(one)) /* ... or from poll() */
			pthread_join(s->reader, NULL);
		else
			pthread_detach(s->reader);
	}
	serial_restore_tty();
	dev_irq_close(&s->irq, s->vm_fd);
	close(s->stop_fd);
	pthread_cond_destroy(&s->rx_room);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

const struct dev_ops serial_ops = {
    .name = "serial (COM1)",
    .setup = serial_setup,
    .teardown = serial_teardown,
    .usage = NULL, /* always present for Linux guests; console=ttyS0 */
};
