# tests/combat_ref.R: the reference values for tests/unit/test_combat.c, computed once
# with sva::ComBat (Debian: apt-get install r-bioc-sva) and committed in
# tests/fixtures/combat/. Run from the repository root:  Rscript tests/combat_ref.R
#
# Data: 50 genes x 30 samples of simulated log-expression, 3 batches of unequal size
# (8, 10, 12) with additive and multiplicative batch effects, a 3-level covariate
# (the biological signal) spread over the batches, and gene 50 constant inside
# batch 1 (sva leaves such genes unadjusted).
# Files (whitespace-separated, one gene per line, samples in columns, %.17g):
#   data.txt           the input, genes x samples
#   batch.txt          batch index of each sample (0-based)
#   cov.txt            covariate level of each sample (0-based)
#   par.txt            ComBat(data, batch)                      parametric
#   par_cov.txt        ComBat(data, batch, mod = ~ cov)         parametric, covariate kept
#   mean.txt           ComBat(data, batch, mean.only = TRUE)
#   mean_cov.txt       ComBat(data, batch, mod = ~ cov, mean.only = TRUE)
#   single.txt         ComBat on the first 19 samples with sample 19 alone in batch 3
#                      (a batch of one sample: sva switches to mean-only)
suppressPackageStartupMessages(library(sva))
set.seed(20240607)
G <- 50
sizes <- c(8, 10, 12)
batch <- rep(0:2, sizes)
n <- length(batch)
cov <- rep(0:2, length.out = n)
gene_mean <- runif(G, 2, 10)
gene_sd <- runif(G, 0.3, 1.5)
cov_eff <- matrix(rnorm(G * 3, 0, 0.8), G, 3)
cov_eff[, 1] <- 0
add <- matrix(rnorm(G * 3, 0, 0.7), G, 3)
mult <- matrix(rgamma(G * 3, shape = 4, rate = 4), G, 3)
dat <- matrix(0, G, n)
for (j in 1:n) {
	b <- batch[j] + 1
	dat[, j] <- gene_mean + cov_eff[, cov[j] + 1] + add[, b] + rnorm(G) * gene_sd * sqrt(mult[, b])
}
dat[G, batch == 0] <- 0
rownames(dat) <- paste0("g", 1:G)
colnames(dat) <- paste0("s", 1:n)
dir <- "tests/fixtures/combat"
put <- function(m, name) {
	lines <- apply(m, 1, function(r) paste(sprintf("%.17g", r), collapse = " "))
	writeLines(lines, file.path(dir, name))
}
put(dat, "data.txt")
writeLines(paste(batch, collapse = " "), file.path(dir, "batch.txt"))
writeLines(paste(cov, collapse = " "), file.path(dir, "cov.txt"))
mod <- model.matrix(~ as.factor(cov))
put(suppressMessages(ComBat(dat, batch)), "par.txt")
put(suppressMessages(ComBat(dat, batch, mod = mod)), "par_cov.txt")
put(suppressMessages(ComBat(dat, batch, mean.only = TRUE)), "mean.txt")
put(suppressMessages(ComBat(dat, batch, mod = mod, mean.only = TRUE)), "mean_cov.txt")
b1 <- c(batch[1:18], 2)
put(suppressMessages(ComBat(dat[, 1:19], b1)), "single.txt")
cat(sprintf("sva %s, R %s\n", packageVersion("sva"), getRversion()))
