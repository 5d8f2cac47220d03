/* metrics.h: classification metrics from a confusion matrix (see docs/METRICS.md).
 *
 * A Confusion is a k x k count matrix, row = true class, column = predicted class.
 * Definitions follow scikit-learn's defaults:
 *   accuracy           trace / total
 *   balanced accuracy  mean recall over the classes present in the truth
 *                      (balanced_accuracy_score)
 *   macro-F1           mean F1 over the classes present in the truth or the
 *                      predictions, a class with no true positive scoring 0
 *                      (f1_score(average='macro', zero_division=0))
 * A metric that is undefined (no rows counted) is NAN; JSON writes it as null.
 * confusion_add ignores rows whose truth is negative (-1 = unlabelled). */
#ifndef DAPIPE_METRICS_H
#define DAPIPE_METRICS_H

#include <stdio.h>

typedef struct { int k; long *confusion; } Confusion;  /* k*k, row = true, col = predicted */

void confusion_init(Confusion *c, int k);
void confusion_add(Confusion *c, int truth, int pred);
void confusion_free(Confusion *c);
/* add every count of src into dst (same k): merges per-chunk matrices */
void confusion_merge(Confusion *dst, const Confusion *src);
long confusion_total(const Confusion *c);

double metric_accuracy(const Confusion *c);
double metric_balanced_accuracy(const Confusion *c);
double metric_macro_f1(const Confusion *c);

/* per class; 0 where the denominator is 0 (scikit-learn's zero_division=0) */
long metric_support(const Confusion *c, int cls);    /* true rows of cls */
long metric_predicted(const Confusion *c, int cls);  /* rows predicted as cls */
double metric_precision(const Confusion *c, int cls);
double metric_recall(const Confusion *c, int cls);
double metric_f1(const Confusion *c, int cls);

/* Text report: the three summaries, a per-class table (precision, recall, F1,
 * support) and the confusion matrix with aligned columns named by class. */
void metrics_print_text(FILE *fp, const Confusion *c, char *const *classes);
/* One JSON object (see docs/METRICS.md), newline-terminated. */
void metrics_write_json(FILE *fp, const Confusion *c, char *const *classes);

#endif
