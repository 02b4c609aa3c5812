/* pareto.c - Pareto front and cheapest point within a loss budget (pareto.h). */
#include "pareto.h"

#include <math.h>

/* q better than or equal to r for this direction */
static int geq(double q, double r, int higher_better) { return higher_better ? q >= r : q <= r; }

int s2s_pareto_front(const double *cost, const double *quality, int n, int higher_better, int *on_front) {
    int count = 0;
    for (int i = 0; i < n; i++) {
        on_front[i] = 0;
        if (!isfinite(cost[i]) || !isfinite(quality[i])) continue;
        int dominated = 0;
        for (int j = 0; j < n && !dominated; j++) {
            if (j == i || !isfinite(cost[j]) || !isfinite(quality[j])) continue;
            int no_worse = cost[j] <= cost[i] && geq(quality[j], quality[i], higher_better);
            int better = cost[j] < cost[i] || quality[j] != quality[i];
            dominated = no_worse && better;
        }
        on_front[i] = !dominated;
        count += on_front[i];
    }
    return count;
}

int s2s_pareto_cheapest_within(const double *cost, const double *loss, int n, double max_loss, double max_cost) {
    int best = -1;
    for (int i = 0; i < n; i++) {
        if (!isfinite(cost[i]) || !isfinite(loss[i]) || loss[i] > max_loss || !(cost[i] < max_cost)) continue;
        if (best < 0 || cost[i] < cost[best] || (cost[i] == cost[best] && loss[i] < loss[best])) best = i;
    }
    return best;
}
