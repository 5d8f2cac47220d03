#!/bin/sh
# tests/cli/pipelines.sh: pipelines/adapt, predict, sweep, plot and demo.
# --help and usage errors; then short runs on samples/ (few epochs): the output files,
# one prediction row per target sample with a valid role, accuracy of a supervised run
# above a floor that source-only stays below, pipelines/predict reproducing adapt's
# predictions through normalize --like, commands.sh re-running to the same predictions,
# a small sweep.
# shellcheck disable=SC1091,SC2015
. "$(dirname "$0")/../lib.sh"
P="$ROOT/pipelines"
S=${PIPELINES_SAMPLES:-$ROOT/samples}
export DAPIPE_BIN="$BIN"
export OPENBLAS_NUM_THREADS=1

# ---- help and usage errors (pipelines-1.x)
printf 'id,tissue,g1\ns1,a,1\n' >"$TMP/s.csv"
for s in adapt predict sweep demo plot; do
	run "pipelines-1.1 $s --help" 0 sh "$P/$s" --help
	out_has "Usage"
done
run "pipelines-1.2 adapt without --out" 2 sh "$P/adapt" --source "$TMP/s.csv" --target "$TMP/s.csv" --label-column tissue
err_is "adapt: --out DIR is required
Try 'adapt --help' for more information."
run "pipelines-1.3 adapt bad method" 2 sh "$P/adapt" --method magic --out "$TMP/x"
err_has "adapt: --method: magic: must be source-only, target-only, dann or wgan-gp"
run "pipelines-1.4 adapt --epochs 0" 2 sh "$P/adapt" --epochs 0 --out "$TMP/x"
err_has "adapt: --epochs: 0: must be at least 1"
run "pipelines-1.5 adapt --labeled-fraction 2" 2 sh "$P/adapt" --labeled-fraction 2 --out "$TMP/x"
err_has "adapt: --labeled-fraction: 2: must be at most 1"
run "pipelines-1.6 adapt target-only unsupervised" 2 sh "$P/adapt" --method target-only \
	--source "$TMP/s.csv" --target "$TMP/s.csv" --label-column tissue --out "$TMP/x"
err_has "target-only needs labelled target"
run "pipelines-1.7 adapt both labelled options" 2 sh "$P/adapt" --labeled-fraction 0.1 --labeled-per-class 2 --out "$TMP/x"
err_has "not both"
run "pipelines-1.8 adapt unknown option" 2 sh "$P/adapt" --frobnicate
err_has "adapt: --frobnicate: unknown option"
run "pipelines-1.9 adapt missing value" 2 sh "$P/adapt" --seed
err_has "adapt: --seed: needs a value"
run "pipelines-1.10 adapt no labels" 2 sh "$P/adapt" --source "$TMP/s.csv" --target "$TMP/s.csv" --out "$TMP/x"
err_has "the source needs labels"
run "pipelines-1.11 adapt unreadable source" 1 sh "$P/adapt" --source "$TMP/nope.csv" --out "$TMP/x"
err_has "adapt: $TMP/nope.csv: cannot read the source table"
run "pipelines-1.12 predict without --model" 2 sh "$P/predict" "$S/gtex.gct.gz"
err_has "predict: --model FILE is required"
run "pipelines-1.13 sweep bad method" 2 sh "$P/sweep" --methods 'dann nope' --out "$TMP/x"
err_has "sweep: --methods: nope:"
run "pipelines-1.13 sweep bad alignment" 2 sh "$P/sweep" --methods 'dann:joint' --out "$TMP/x"
err_has "sweep: --methods: dann:joint: must be"
run "pipelines-1.13 sweep entropy weights with wgan-gp" 2 sh "$P/sweep" --methods 'wgan-gp:conditional-entropy' --out "$TMP/x"
run "pipelines-1.14 sweep bad fraction" 2 sh "$P/sweep" --fractions '0.1 1.5' --out "$TMP/x"
err_has "sweep: --fractions: 1.5: must be at most 1"
run "pipelines-1.15 plot unknown kind" 2 sh "$P/plot" pie a.csv b.png
err_has "plot: pie: unknown plot kind"
run "pipelines-1.16 demo bad epochs" 2 sh "$P/demo" --epochs x
err_has "demo: --epochs: x: not an integer"
if command -v shellcheck >/dev/null 2>&1; then
	ok "pipelines-1.17 shellcheck" shellcheck -x "$P/adapt" "$P/predict" "$P/sweep" "$P/demo" "$P/plot" "$P/lib.sh"
fi

# ---- runs on the samples (pipelines-2.x)
for f in normalize batch train-step encode predict discriminate; do
	[ -x "$BIN/$f" ] || { fail "pipelines-2 filters" "$BIN/$f missing"; exit 0; }
done
for f in tcga.csv.gz gtex.gct.gz gtex_labels.csv; do
	[ -r "$S/$f" ] || { fail "pipelines-2 samples" "$S/$f missing"; exit 0; }
done
PREP="$TMP/prep"
run "pipelines-2.1 adapt --prepare-only" 0 sh "$P/adapt" --prepare-only --quiet --out "$PREP" \
	--source "$S/tcga.csv.gz" --label-column tissue --normalize-opts --zscore \
	--target "$S/gtex.gct.gz" --target-labels "$S/gtex_labels.csv" --target-pre --log2
ok "pipelines-2.1 prepared streams" test -s "$PREP/source.mpk" -a -s "$PREP/target.mpk" -a -s "$PREP/stats.mpk"

# number of target samples: the GCT's sample columns
NT=$(gzip -dc "$S/gtex.gct.gz" | sed -n 3p | awk -F'\t' '{ print NF - 2 }')

# check DIR: the files, one row per target sample, valid roles; prints the test accuracy
check_run() {
	name=$1 dir=$2
	for f in predictions.csv model.mpk metrics.csv eval.json eval.txt split.csv commands.sh report.md summary.csv; do
		[ -s "$dir/$f" ] || { fail "$name files" "$dir/$f missing or empty"; return 1; }
	done
	pass "$name files"
	rows=$(awk 'END { print NR - 1 }' "$dir/predictions.csv")
	uniq=$(awk -F, 'NR > 1 { print $1 }' "$dir/predictions.csv" | sort -u | wc -l)
	if [ "$rows" -eq "$NT" ] && [ "$uniq" -eq "$NT" ]; then
		pass "$name one row per target sample"
	else
		fail "$name one row per target sample" "$rows rows, $uniq ids, $NT target samples"
	fi
	bad=$(awk -F, 'NR == 1 { nf = NF; next }
		NF != nf || ($NF != "labelled-train" && $NF != "unlabelled-train" && $NF != "validation" && $NF != "test") { n++ }
		END { print n + 0 }' "$dir/predictions.csv")
	[ "$bad" -eq 0 ] && pass "$name roles and columns" || fail "$name roles and columns" "$bad bad rows"
	ntest=$(awk -F, '$NF == "test"' "$dir/predictions.csv" | wc -l)
	rows=$(sed -n 's/.*"rows": *\([0-9]*\).*/\1/p' "$dir/eval.json" | head -n 1)
	[ "$ntest" -gt 0 ] && [ "$ntest" = "$rows" ] && pass "$name eval on the test split only" ||
		fail "$name eval on the test split only" "eval rows $rows, test rows $ntest"
	# every probability row sums to 1
	bad=$(awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i ~ /^p_/) p[i] = 1; next }
		{ s = 0; for (i in p) s += $i; if (s < 0.999 || s > 1.001) n++ } END { print n + 0 }' "$dir/predictions.csv")
	[ "$bad" -eq 0 ] && pass "$name probabilities" || fail "$name probabilities" "$bad rows do not sum to 1"
}
acc_of() {
	awk -F, 'NR == 2 { print $6 }' "$1/summary.csv"
}

run "pipelines-2.2 adapt source-only" 0 sh "$P/adapt" --prepared "$PREP" --method source-only \
	--epochs 15 --train-opts '--lr 1e-3' --seed 1 --quiet --out "$TMP/so"
check_run "pipelines-2.2 source-only" "$TMP/so"
ok "pipelines-2.2 unsupervised: no labelled target, selected by information maximisation" sh -c \
	"! grep -q ',labelled-train$' '$TMP/so/predictions.csv' && ! grep -q ',validation$' '$TMP/so/predictions.csv' && grep -q -- '--select im' '$TMP/so/commands.sh'"

run "pipelines-2.3 adapt target-only, all target training rows labelled" 0 sh "$P/adapt" --prepared "$PREP" \
	--method target-only --labeled-fraction 1 --epochs 10 --train-opts '--lr 1e-3' --seed 1 --quiet --out "$TMP/wg"
check_run "pipelines-2.3 target-only" "$TMP/wg"
ok "pipelines-2.3 plots" test -s "$TMP/wg/curves.png" -a -s "$TMP/wg/latent.png" -a -s "$TMP/wg/latent-before.png" -a -s "$TMP/wg/confusion.png"
grep ',test$' "$TMP/so/split.csv" | sort >"$TMP/t1"
grep ',test$' "$TMP/wg/split.csv" | sort >"$TMP/t2"
ok "pipelines-2.3 same test split as source-only" cmp "$TMP/t1" "$TMP/t2"

# accuracy floors, measured on the samples (gen-samples --seed 1, OPENBLAS_NUM_THREADS=1):
# source-only after 15 epochs, target standardised on its own statistics (adapt's
# default), model kept by information maximisation: 0.80; target-only with the whole
# labelled target training split, 10 epochs: 0.81. Floors about 0.1-0.2 below, so a
# run that trains at all passes and a broken one (chance is 0.06) fails.
SO_FLOOR=${PIPELINES_SO_FLOOR:-0.6}
TO_FLOOR=${PIPELINES_TO_FLOOR:-0.7}
a_so=$(acc_of "$TMP/so")
a_wg=$(acc_of "$TMP/wg")
echo "# test accuracy: source-only $a_so (floor $SO_FLOOR), target-only $a_wg (floor $TO_FLOOR)"
if awk -v a="$a_wg" -v f="$TO_FLOOR" 'BEGIN { exit !(a != "" && a + 0 > f + 0) }'; then
	pass "pipelines-2.4 target-only above its floor"
else
	fail "pipelines-2.4 target-only above its floor" "accuracy $a_wg, floor $TO_FLOOR"
fi
if awk -v a="$a_so" -v f="$SO_FLOOR" 'BEGIN { exit !(a != "" && a + 0 > f + 0) }'; then
	pass "pipelines-2.4 source-only above its floor"
else
	fail "pipelines-2.4 source-only above its floor" "accuracy $a_so, floor $SO_FLOOR"
fi
ok "pipelines-2.4 target scaling own" grep -q '^own$' "$PREP/target-scaling.txt"
ok "pipelines-2.4 report names the data that chose the model" grep -q 'model chosen on: im: .*no target label was used' "$TMP/so/report.md"
ok "pipelines-2.4 scores.csv" sh -c "sed -n 2p '$TMP/so/scores.csv' | grep -q '^[0-9]*,im,'"

# pipelines/predict on the raw target table: the same predictions as adapt's
# (the target's own z-score statistics, PREP/target-stats.mpk, come after the bundle's)
run "pipelines-2.5 predict from the bundle" 0 sh -c "normalize --quiet --log2 '$S/gtex.gct.gz' |
	normalize --quiet --like '$TMP/wg/model.mpk' | normalize --quiet --stats '$PREP/target-stats.mpk' |
	encode --model '$TMP/wg/model.mpk' | predict --model '$TMP/wg/model.mpk' > '$TMP/pred.csv'"
cut -d, -f1-"$(head -n 1 "$TMP/pred.csv" | awk -F, '{ print NF }')" "$TMP/wg/predictions.csv" | sort >"$TMP/a.csv"
sort "$TMP/pred.csv" >"$TMP/b.csv"
ok "pipelines-2.5 same predictions as adapt (normalize --like, then the target statistics)" cmp "$TMP/a.csv" "$TMP/b.csv"
run "pipelines-2.6 predict with labels" 0 sh "$P/predict" --model "$TMP/wg/model.mpk" --pre --log2 \
	--labels "$S/gtex_labels.csv" --label-column tissue --out "$TMP/pred2.csv" "$S/gtex.gct.gz"
err_has "accuracy"
ok "pipelines-2.6 label column" sh -c "head -n 1 '$TMP/pred2.csv' | grep -q ',label\$'"
# the target's own scaling in pipelines/predict: --target-stats (the saved statistics)
# reproduces adapt's predictions; --own-scaling fits them on the table itself (here the
# same 500 rows adapt fitted on, so the same predictions); without either the target
# gets only the source statistics and the predictions differ
run "pipelines-2.11 predict --target-stats" 0 sh "$P/predict" --quiet --model "$TMP/wg/model.mpk" --pre --log2 \
	--target-stats "$PREP/target-stats.mpk" --out "$TMP/pred3.csv" "$S/gtex.gct.gz"
sort "$TMP/pred3.csv" >"$TMP/c.csv"
ok "pipelines-2.11 same predictions as adapt" cmp "$TMP/a.csv" "$TMP/c.csv"
run "pipelines-2.12 predict --own-scaling" 0 sh "$P/predict" --quiet --model "$TMP/wg/model.mpk" --pre --log2 \
	--own-scaling --out "$TMP/pred4.csv" "$S/gtex.gct.gz"
ok "pipelines-2.12 same classes as adapt" sh -c "cut -d, -f1,2 '$TMP/a.csv' > '$TMP/a2'; sort '$TMP/pred4.csv' | cut -d, -f1,2 > '$TMP/d2'; cmp '$TMP/a2' '$TMP/d2'"
ok "pipelines-2.12 without own scaling the predictions differ" sh -c "cut -d, -f1-3 '$TMP/pred2.csv' | sort > '$TMP/e2'; cut -d, -f1-3 '$TMP/a.csv' > '$TMP/a3'; ! cmp -s '$TMP/a3' '$TMP/e2'"
run "pipelines-2.13 predict both scalings" 2 sh "$P/predict" --model "$TMP/wg/model.mpk" --own-scaling \
	--target-stats "$PREP/target-stats.mpk" "$S/gtex.gct.gz"
err_has "predict: give --target-stats or --own-scaling, not both"
run "pipelines-2.14 predict unreadable target statistics" 1 sh "$P/predict" --model "$TMP/wg/model.mpk" \
	--target-stats "$TMP/nope.mpk" "$S/gtex.gct.gz"
err_has "predict: $TMP/nope.mpk: cannot read the target statistics"

# commands.sh re-runs the whole run to the same predictions (same seed, same output)
cp "$TMP/so/predictions.csv" "$TMP/so-first.csv"
run "pipelines-2.7 commands.sh re-runs" 0 sh "$TMP/so/commands.sh"
ok "pipelines-2.7 same model predictions" sh -c \
	"cut -d, -f1-3 '$TMP/so-first.csv' | sed 1d | sort > '$TMP/r1'; encode --model '$TMP/so/model.mpk' '$PREP/target.mpk' | predict --model '$TMP/so/model.mpk' | cut -d, -f1-3 | sed 1d | sort > '$TMP/r2'; cmp '$TMP/r1' '$TMP/r2'"

# a small sweep: 2 methods x 1 fraction x 2 seeds
run "pipelines-2.8 sweep" 0 sh "$P/sweep" --quiet --source "$S/tcga.csv.gz" --label-column tissue \
	--target "$S/gtex.gct.gz" --target-labels "$S/gtex_labels.csv" --normalize-opts --zscore --target-pre --log2 \
	--methods 'source-only target-only' --fractions '0.2' --seeds '1 2' --epochs 2 --jobs 2 --out "$TMP/sw"
ok "pipelines-2.8 results.csv" sh -c "[ \$(sed 1d '$TMP/sw/results.csv' | grep -c '^[a-z-]*,[a-z]*,0.2,1,[12],[01]') -eq 4 ]"
ok "pipelines-2.8 sweep.png" test -s "$TMP/sw/sweep.png"
ok "pipelines-2.8 validator scores per run" sh -c "sed 1d '$TMP/sw/results.csv' | awk -F, 'NF != 19 { exit 1 }'"

# the validators against the oracle: 2 methods x 2 seeds, unsupervised (the second with
# adapt's --align: a method of its own in results.csv)
run "pipelines-2.10 sweep validators" 0 sh "$P/sweep" --quiet --source "$S/tcga.csv.gz" --label-column tissue \
	--target "$S/gtex.gct.gz" --target-labels "$S/gtex_labels.csv" --normalize-opts --zscore --target-pre --log2 \
	--methods 'source-only dann:conditional-entropy' --fractions 0 --seeds '1 2' --epochs 2 --jobs 2 --out "$TMP/sv"
ok "pipelines-2.10 aligned method" sh -c "[ \$(grep -c '^dann:conditional-entropy,unsupervised,0,1,[12],.*,dann+conditional-entropy-l0-s1-seed[12],' '$TMP/sv/results.csv') -eq 2 ]"
ok "pipelines-2.10 aligned run" grep -q -- '--align conditional-entropy' "$TMP/sv/runs/dann+conditional-entropy-l0-s1-seed1/commands.sh"
ok "pipelines-2.10 validators.csv" sh -c "[ \$(grep -c '^\(source_val\|entropy\|im\|snd\|dev\|reverse\),2,' '$TMP/sv/validators.csv') -eq 6 ]"
# the oracle is the best run's accuracy of each seed, every pick at most that
ok "pipelines-2.10 oracle" sh -c "o=\$(awk -F, 'NR > 1 && \$2 == \"unsupervised\" { s = \$5; if (!(s in m) || \$6 > m[s]) m[s] = \$6 } END { for (s in m) t += m[s]; printf \"%.4f\", t / 2 }' '$TMP/sv/results.csv'); awk -F, -v o=\"\$o\" 'NR > 1 && (\$4 != o || \$3 > \$4 + 1e-9) { exit 1 }' '$TMP/sv/validators.csv'"
ok "pipelines-2.10 validators.txt" test -s "$TMP/sv/validators.txt"

# the adversarial methods run through (2 epochs, no plots)
for m in dann wgan-gp; do
	run "pipelines-2.9 adapt $m unsupervised" 0 sh "$P/adapt" --prepared "$PREP" --method "$m" \
		--epochs 2 --seed 1 --quiet --no-plots --out "$TMP/$m"
	ok "pipelines-2.9 $m predictions" test "$(awk 'END { print NR - 1 }' "$TMP/$m/predictions.csv")" -eq "$NT"
done
# --align: conditional alignment (CDAN+E) passed to train-step, in the report and commands
run "pipelines-2.16 adapt dann --align conditional-entropy" 0 sh "$P/adapt" --prepared "$PREP" --method dann \
	--align conditional-entropy --epochs 2 --seed 1 --quiet --no-plots --out "$TMP/dce"
ok "pipelines-2.16 predictions" test "$(awk 'END { print NR - 1 }' "$TMP/dce/predictions.csv")" -eq "$NT"
ok "pipelines-2.16 report" sh -c "grep -q '^- alignment: conditional-entropy ' '$TMP/dce/report.md' && grep -q '^# Adaptation run: dann (conditional-entropy), unsupervised$' '$TMP/dce/report.md'"
ok "pipelines-2.16 commands" grep -q -- '--align conditional-entropy' "$TMP/dce/commands.sh"
ok "pipelines-2.16 bundle" sh -c "normalize --show header '$TMP/dce/model.mpk' | grep -q '\"align\": \"conditional-entropy\"'"
run "pipelines-2.17 adapt --align bad" 2 sh "$P/adapt" --prepared "$PREP" --method dann --align joint --out "$TMP/x"
err_has "adapt: --align: joint: must be marginal, weighted, conditional or conditional-entropy"
run "pipelines-2.17 adapt --align source-only" 2 sh "$P/adapt" --prepared "$PREP" --method source-only --align conditional --out "$TMP/x"
err_has "adapt: --align: source-only uses no domain head"
run "pipelines-2.17 adapt --align wgan-gp entropy" 2 sh "$P/adapt" --prepared "$PREP" --method wgan-gp --align conditional-entropy --out "$TMP/x"
err_has "adapt: --align conditional-entropy: dann only (wgan-gp: conditional)"
# alignment before (the source-only model's latent space) and after, in the report
run "pipelines-2.15 adapt dann --before" 0 sh "$P/adapt" --prepared "$PREP" --method dann \
	--epochs 2 --seed 1 --quiet --no-plots --before "$TMP/so/model.mpk" --out "$TMP/dab"
ok "pipelines-2.15 alignment before and after" grep -q '"pad": ' "$TMP/dab/alignment-before.json" "$TMP/dab/alignment.json"
ok "pipelines-2.15 report rows" sh -c "grep -q '^| before: latent space of so/model.mpk | [-0-9.e]* | [0-9.e-]* |\$' '$TMP/dab/report.md' && grep -q '^| after: dann latent space | [-0-9.e]* | [0-9.e-]* |\$' '$TMP/dab/report.md'"
