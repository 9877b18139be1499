/* format.c: printf-style formatting into a buffer or, in chunks, to the console */
#include "rt.h"

/* Output goes into buf; when full, flush() empties it (console) or the rest is dropped. */
struct sink {
	char *buf;
	size_t size, len;
	size_t total; /* what the output would have been, for snprintf's return */
	void (*flush)(struct sink *s);
};

static void put(struct sink *s, char c)
{
	if (s->len == s->size && s->flush)
		s->flush(s);
	if (s->len < s->size)
		s->buf[s->len++] = c;
	s->total++;
}

static void pad(struct sink *s, char c, int n)
{
	while (n-- > 0)
		put(s, c);
}

struct spec {
	int left, zero, width, prec; /* prec < 0: none */
};

static void put_str(struct sink *s, const char *str, const struct spec *sp)
{
	size_t n = sp->prec >= 0 ? strnlen(str, (size_t)sp->prec) : strlen(str);

	if (!sp->left)
		pad(s, ' ', sp->width - (int)n);
	for (size_t i = 0; i < n; i++)
		put(s, str[i]);
	if (sp->left)
		pad(s, ' ', sp->width - (int)n);
}

static void put_num(struct sink *s, uint64_t v, int neg, unsigned base, int upper,
		    const char *prefix, const struct spec *sp)
{
	const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
	char tmp[24];
	int n = 0, plen = (int)strlen(prefix) + neg, zeros, spaces;

	do {
		tmp[n++] = digits[v % base];
		v /= base;
	} while (v);
	if (sp->prec == 0 && n == 1 && tmp[0] == '0')
		n = 0;
	zeros = sp->prec > n ? sp->prec - n : 0;
	if (sp->zero && !sp->left && sp->prec < 0 && sp->width > n + plen)
		zeros = sp->width - n - plen;
	spaces = sp->width - n - zeros - plen;
	if (!sp->left)
		pad(s, ' ', spaces);
	if (neg)
		put(s, '-');
	while (*prefix)
		put(s, *prefix++);
	pad(s, '0', zeros);
	while (n)
		put(s, tmp[--n]);
	if (sp->left)
		pad(s, ' ', spaces);
}

static const char *parse_spec(const char *f, struct spec *sp, va_list *ap)
{
	sp->left = sp->zero = sp->width = 0;
	sp->prec = -1;
	for (;; f++) {
		if (*f == '-')
			sp->left = 1;
		else if (*f == '0')
			sp->zero = 1;
		else if (*f != ' ' && *f != '+' && *f != '#')
			break;
	}
	if (*f == '*') {
		sp->width = va_arg(*ap, int);
		if (sp->width < 0) {
			sp->left = 1;
			sp->width = -sp->width;
		}
		f++;
	}
	while (*f >= '0' && *f <= '9')
		sp->width = sp->width * 10 + (*f++ - '0');
	if (*f == '.') {
		f++;
		sp->prec = 0;
		if (*f == '*') {
			sp->prec = va_arg(*ap, int);
			f++;
		}
		while (*f >= '0' && *f <= '9')
			sp->prec = sp->prec * 10 + (*f++ - '0');
	}
	return f;
}

static void format(struct sink *s, const char *f, va_list ap)
{
	va_list args;

	va_copy(args, ap);
	for (; *f; f++) {
		struct spec sp;
		int lng = 0; /* 0 int, 1 long, 2 long long, -1 short, -2 char */
		uint64_t u;
		int64_t d;

		if (*f != '%') {
			put(s, *f);
			continue;
		}
		f = parse_spec(f + 1, &sp, &args);
		for (;; f++) {
			if (*f == 'l')
				lng++;
			else if (*f == 'h')
				lng--;
			else if (*f == 'z' || *f == 'j' || *f == 't')
				lng = 1;
			else
				break;
		}
		switch (*f) {
		case 'd':
		case 'i':
			if (lng >= 1)
				d = lng == 1 ? va_arg(args, long) : va_arg(args, long long);
			else
				d = va_arg(args, int);
			if (lng == -1)
				d = (short)d;
			else if (lng <= -2)
				d = (signed char)d;
			u = d < 0 ? -(uint64_t)d : (uint64_t)d;
			put_num(s, u, d < 0, 10, 0, "", &sp);
			break;
		case 'u':
		case 'x':
		case 'X':
			if (lng >= 1)
				u = lng == 1 ? va_arg(args, unsigned long)
					     : va_arg(args, unsigned long long);
			else
				u = va_arg(args, unsigned int);
			if (lng == -1)
				u = (unsigned short)u;
			else if (lng <= -2)
				u = (unsigned char)u;
			put_num(s, u, 0, *f == 'u' ? 10 : 16, *f == 'X', "", &sp);
			break;
		case 'p':
			put_num(s, (uint64_t)va_arg(args, void *), 0, 16, 0, "0x", &sp);
			break;
		case 's': {
			const char *str = va_arg(args, const char *);
			put_str(s, str ? str : "(null)", &sp);
			break;
		}
		case 'c': {
			char c[2] = {(char)va_arg(args, int), 0};
			sp.prec = 1;
			put_str(s, c, &sp);
			break;
		}
		case '%':
			put(s, '%');
			break;
		case '\0':
			f--; /* a lone '%' at the end */
			break;
		default: /* unknown conversion: show it rather than guess */
			put(s, '%');
			put(s, *f);
			break;
		}
	}
	va_end(args);
}

int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
	struct sink s = {.buf = buf, .size = size ? size - 1 : 0};

	format(&s, fmt, ap);
	if (size)
		buf[s.len] = '\0';
	return (int)s.total;
}

int snprintf(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, size, fmt, ap);
	va_end(ap);
	return n;
}

static void console_flush(struct sink *s)
{
	if (s->len)
		rt_write(s->buf, s->len);
	s->len = 0;
}

/* One write hypercall per call (for lines up to the buffer size), so lines
 * printed by different vCPUs do not interleave. */
int vprintf(const char *fmt, va_list ap)
{
	char buf[512];
	struct sink s = {.buf = buf, .size = sizeof(buf), .flush = console_flush};

	format(&s, fmt, ap);
	console_flush(&s);
	return (int)s.total;
}

int printf(const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vprintf(fmt, ap);
	va_end(ap);
	return n;
}

int puts(const char *str)
{
	return printf("%s\n", str);
}
