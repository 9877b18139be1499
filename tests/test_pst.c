/* test_pst.c: every legal and illegal page-state transition, and flag coherence */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "mm/mm.h"

static int failures;

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c)) {                                                                        \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c);      \
			failures++;                                                                \
		}                                                                                  \
	} while (0)

/* The state machine of mm/README.md, written out independently of pst.c. */
static const char *const expect[PST_NSTATES][PST_NSTATES] = {
    /*                 NEW   RESIDENT  UNMAPPED  WRITEBACK SWAPPED */
    [PST_NEW] = {"-", "fault", "hostwrite", NULL, NULL},
    [PST_RESIDENT] = {"discard", "-", "clear_young", "invalidate_start", NULL},
    [PST_UNMAPPED] = {"discard", "minor", "-", "invalidate_start", NULL},
    [PST_WRITEBACK] = {NULL, NULL, "cancel", "-", "invalidate_end"},
    [PST_SWAPPED] = {"discard", "swapin", "prefetch", NULL, "-"},
};

static void put(struct pst *t, uint64_t pfn, enum pst_state s, uint8_t flags)
{
	t->e[pfn].state = (uint8_t)s;
	t->e[pfn].flags = flags;
}

int main(void)
{
	struct pst t;
	int legal = 0, illegal = 0;

	CHECK(pst_init(&t, 4) == 0);
	for (int f = 0; f < PST_NSTATES; f++) {
		for (int to = 0; to < PST_NSTATES; to++) {
			const char *why = expect[f][to];
			bool want = why && why[0] != '-';

			CHECK(pst_transition_legal(f, to) == want);
			put(&t, 1, f, PST_F_SLOT | PST_F_DIRTY);
			CHECK((pst_set(&t, 1, to) == 0) == want);
			CHECK(t.e[1].state ==
			      (want ? to : f)); /* an illegal move changes nothing */
			if (want)
				legal++;
			else
				illegal++;
		}
	}
	CHECK(legal == 13 && illegal == 12);
	/* out-of-range states and pages */
	CHECK(!pst_transition_legal(PST_NSTATES, PST_NEW));
	CHECK(!pst_transition_legal(PST_NEW, PST_NSTATES));
	CHECK(pst_set(&t, 4, PST_RESIDENT) == -EINVAL);
	/* entering SWAPPED needs a slot: no content may be lost */
	put(&t, 2, PST_WRITEBACK, 0);
	CHECK(pst_set(&t, 2, PST_SWAPPED) == -EINVAL);
	CHECK(t.e[2].state == PST_WRITEBACK);
	put(&t, 2, PST_WRITEBACK, PST_F_SLOT);
	CHECK(pst_set(&t, 2, PST_SWAPPED) == 0);
	/* discarding forgets flags and age */
	t.e[2].age = 7;
	CHECK(pst_set(&t, 2, PST_NEW) == 0);
	CHECK(t.e[2].flags == 0 && t.e[2].age == 0);
	CHECK(pst_get(&t, 3) == PST_NEW); /* a fresh table is all never-touched */
	for (int s = 0; s <= PST_NSTATES; s++)
		CHECK(pst_state_name(s) != NULL);
	pst_free(&t);
	if (failures) {
		fprintf(stderr, "test_pst: %d failures\n", failures);
		return 1;
	}
	printf("test_pst: %d legal and %d illegal transitions checked\n", legal, illegal);
	return 0;
}
