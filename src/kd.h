/* kd.h - word-level knowledge distillation loss (Hinton et al. 2015; as used by
 * NASH fine-tuning, docs/MODEL.md "NASH structured pruning"): the student is pulled
 * towards the teacher's softened output distribution on every target position.
 *
 *   loss = (1 - a) * CE(student, gold; eps) + a * T^2 * KL(softmax(t / T) || softmax(s / T))
 *
 * with the KL term averaged over the non-padding target positions. Built from graph
 * ops only (reshape, embedding gather, softmax, logsoftmax, mul, sum), so it runs on
 * CPU and CUDA graphs alike; gradients flow to the student logits only. */
#ifndef S2S_KD_H
#define S2S_KD_H

#include <stdint.h>

#include "graph.h"

/* logits, t_logits [.., V] (same shape; t_logits no grad, e.g. from the teacher on a
 * no-grad part of the same graph), tgt [rows] gold ids (rows equal to ignore are
 * left out of both terms), eps label smoothing of the CE term, a the KD weight in
 * [0, 1], T > 0 the temperature. -> scalar. *kl_out (if not NULL) gets the tensor of
 * the mean KL term (without the a * T^2 factor), for logging. */
s2s_tensor *s2s_kd_loss(s2s_graph *g, s2s_tensor *logits, s2s_tensor *t_logits, const int32_t *tgt,
                        float eps, int ignore, float a, float T, s2s_tensor **kl_out);

#endif
