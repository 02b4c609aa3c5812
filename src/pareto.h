/* pareto.h - the quality/cost trade-off of `s2s optimize` as pure functions: which
 * points are on the Pareto front, and which is the cheapest within a quality loss. */
#ifndef S2S_PARETO_H
#define S2S_PARETO_H

/* Points i = 0..n-1 with a cost (lower is better: latency) and a quality (higher is
 * better when higher_better, else lower: WER). Point j dominates i when it is at least
 * as good on both and strictly better on one; equal points do not dominate each
 * other (both stay). on_front[i] = 1 when no point dominates i, else 0; a point with
 * a non-finite cost or quality is never on the front and dominates nothing. Returns
 * how many are on the front. O(n^2). */
int s2s_pareto_front(const double *cost, const double *quality, int n, int higher_better, int *on_front);

/* The index of the lowest-cost point whose loss (>= 0 means worse than the reference)
 * is at most max_loss and whose cost is below max_cost (ties: the smaller loss, then
 * the lower index), or -1 when none is; non-finite points are skipped. */
int s2s_pareto_cheapest_within(const double *cost, const double *loss, int n, double max_loss, double max_cost);

#endif
