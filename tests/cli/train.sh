#!/bin/sh
# tests/cli/train.sh: train-step driving the stages. Rotated two-moons acceptance
# (DANN vs source-only vs WGAN-GP), a Python stage, stages that die or answer
# garbage, NaN losses, exact resume, option errors, and a valgrind run.
. "$(dirname "$0")/../lib.sh"
cd "$TMP" || exit 1

awk -v n=150 -v noise=0.1 -v deg=0 -v s=1 -v p=s -f "$ROOT/tests/moons.awk" > source.csv
awk -v n=150 -v noise=0.1 -v deg=35 -v s=2 -v p=t -f "$ROOT/tests/moons.awk" > target.csv
normalize --quiet --label-column label --domain source source.csv > s.mpk
normalize --quiet --label-column label --domain target target.csv > t.mpk
for sd in 1 2 3; do
	batch --quiet --source s.mpk --target t.mpk --epochs 100 --batch-size 32 --seed $sd --test-fraction 0 > b100-$sd.mpk
done
cp b100-1.mpk b100.mpk
batch --quiet --source s.mpk --target t.mpk --epochs 6 --batch-size 32 --seed 1 > b6.mpk

# accuracy of MODEL on the whole target (its labels never reached training)
target_acc() {
	encode --model "$1" t.mpk | predict --model "$1" --eval --metrics-json "$1.json" > /dev/null 2>&1
	sed -n 's/.*"accuracy": \([0-9.]*\).*/\1/p' "$1.json" | head -n 1
}

# ---- train-1: rotated two moons (35 degrees), unsupervised ----
# One fixed setting for every seed: Ganin's adaptation-weight ramp (weight 1), the model
# kept by information maximisation on the unlabelled target rows (no target label
# chooses it), 100 epochs. Measured over seeds 1-5: DANN 0.98 0.98 0.99 0.99 0.96,
# source-only 0.71-0.77 (with --select last and a constant weight DANN was 0.80-0.96).
# Acceptance: DANN >= 0.95 for each of seeds 1, 2, 3, source-only at least 0.1 lower.
enc="encode --stage --layers 32,32 --norm none --dropout 0"
adv="--weight-schedule ganin --select im --patience 1000"
for sd in 1 2 3; do
	run "train-1.source-only-$sd" 0 train-step --quiet --method source-only --out "source-only-$sd.mpk" --lr 1e-2 \
		--encoder "$enc" --classifier-layers 32 --select last --seed $sd b100-$sd.mpk
	run "train-1.dann-$sd" 0 train-step --quiet --method dann --out "dann-$sd.mpk" --metrics "dann-$sd.csv" --lr 1e-2 \
		--encoder "$enc" --classifier-layers 32 --discriminator-layers 32,32 $adv --seed $sd b100-$sd.mpk
	so=$(target_acc "source-only-$sd.mpk")
	da=$(target_acc "dann-$sd.mpk")
	echo "two-moons seed $sd target accuracy: source-only $so, dann $da"
	if awk -v d="$da" 'BEGIN { exit !(d >= 0.95) }'; then pass "train-1.dann-reaches-0.95-seed-$sd ($da)"; else fail "train-1.dann-reaches-0.95-seed-$sd" "dann target accuracy $da"; fi
	if awk -v d="$da" -v s="$so" 'BEGIN { exit !(s <= d - 0.1) }'; then pass "train-1.source-only-lower-seed-$sd ($so)"; else fail "train-1.source-only-lower-seed-$sd" "source-only $so vs dann $da"; fi
done
cp dann-1.mpk dann.mpk
cp dann-1.csv dann.csv
run "train-1.wgan-gp" 0 train-step --quiet --method wgan-gp --out wgan-gp.mpk --metrics wgan-gp.csv --lr 1e-2 \
	--encoder "$enc" --classifier-layers 32 --discriminator-layers 32,32 $adv --seed 1 b100.mpk
wg=$(target_acc wgan-gp.mpk)
echo "two-moons seed 1 target accuracy: wgan-gp $wg"
if awk -v w="$wg" 'BEGIN { exit !(w > 0.5) }'; then pass "train-1.wgan-gp-learns ($wg)"; else fail "train-1.wgan-gp-learns" "wgan-gp $wg"; fi
ok "train-1.im-selected" sh -c 'normalize --show header dann.mpk | grep -q "\"select\": \"im\""'
ok "train-1.metrics-columns" grep -q '^epoch,class_loss,domain_loss,source_acc,train_acc,val_acc,domain_acc,critic_gap,lambda,lr,seconds,target_val_acc,source_val_acc,entropy,im,snd,dev,reverse_acc$' dann.csv
ok "train-1.metrics-rows" test "$(wc -l < dann.csv)" -eq 101
ok "train-1.critic-gap-column" sh -c "tail -n 1 wgan-gp.csv | awk -F, '\$8 != \"\" && \$7 == \"\" { ok = 1 } END { exit !ok }'"
ok "train-1.bundle-kind" sh -c 'normalize --show header dann.mpk | grep -q "\"kind\": \"model\""'
ok "train-1.bundle-config" sh -c 'normalize --show header dann.mpk | grep -q "\"method\": \"dann\""'
ok "train-1.bundle-preprocessing" sh -c 'normalize --show header dann.mpk | grep -q "\"preprocessing\""'
# same input and seed, same model
run "train-1.again" 0 train-step --quiet --method dann --out dann2.mpk --lr 1e-2 \
	--encoder "$enc" --classifier-layers 32 --discriminator-layers 32,32 $adv --seed 1 b100.mpk
ok "train-1.deterministic" cmp dann.mpk dann2.mpk

# ---- train-2: inference pipeline on raw CSV ----
normalize --quiet --like dann.mpk --label-column label target.csv | encode --model dann.mpk | predict --model dann.mpk > pred.csv 2> pred.err
ok "train-2.pipeline-header" sh -c 'head -n 1 pred.csv | grep -qx "id,predicted,p_a,p_b"'
ok "train-2.pipeline-rows" test "$(wc -l < pred.csv)" -eq 301
encode --model wgan-gp.mpk t.mpk > z.mpk
run "train-2.discriminate-critic" 0 discriminate --model wgan-gp.mpk z.mpk
out_has "id,domain,score"
encode --model dann.mpk t.mpk > zd.mpk
run "train-2.discriminate-dann" 0 discriminate --model dann.mpk zd.mpk
out_has "id,domain,p_target"

# ---- train-3: default selection, early stopping ----
run "train-3.unsupervised-default-select" 0 train-step --quiet --method dann --out sel.mpk --lr 1e-3 \
	--encoder-layers 16 --classifier-layers 16 --discriminator-layers 16 b6.mpk
ok "train-3.selected-on-source-val" sh -c 'normalize --show header sel.mpk | grep -q "\"selected_on\": \"source-val\""'
batch --quiet --source s.mpk --target t.mpk --epochs 30 --seed 1 --labeled-per-class 5 > bsup.mpk
run "train-3.supervised-early-stop" 0 train-step --quiet --method dann --out sup.mpk --metrics sup.csv --lr 1e-2 \
	--patience 2 --min-delta 0.5 --encoder-layers 16 --classifier-layers 16 --discriminator-layers 16 bsup.mpk
ok "train-3.selected-on-target-val" sh -c 'normalize --show header sup.mpk | grep -q "\"selected_on\": \"target-val\""'
ok "train-3.stopped-early" test "$(wc -l < sup.csv)" -lt 31
run "train-3.target-only" 0 train-step --quiet --method target-only --out to.mpk --lr 1e-2 \
	--encoder-layers 16 --classifier-layers 16 bsup.mpk
run "train-3.target-only-unsupervised" 1 train-step --quiet --method target-only --out to2.mpk b6.mpk
err_has "target-only needs labelled target rows"
run "train-3.select-target-val-missing" 1 train-step --quiet --method dann --out x.mpk --select target-val b6.mpk
err_has "has no target validation set"

# ---- train-4: checkpoint and exact resume ----
common="--quiet --method dann --lr 1e-3 --encoder-layers 16,16 --classifier-layers 16 --discriminator-layers 16 --patience 100 --seed 7"
# shellcheck disable=SC2086
run "train-4.full" 0 train-step $common --out full.mpk b6.mpk
# shellcheck disable=SC2086
run "train-4.first-half" 0 train-step $common --epochs-max 3 --checkpoint ck.mpk --out half.mpk b6.mpk
# shellcheck disable=SC2086
run "train-4.resume" 0 train-step $common --resume ck.mpk --checkpoint ck.mpk --out resumed.mpk b6.mpk
ok "train-4.resume-identical" cmp full.mpk resumed.mpk
ok "train-4.no-temporaries" sh -c '! ls | grep -q "\.tmp\."'
run "train-4.resume-wrong-method" 1 train-step --quiet --method wgan-gp --out x.mpk --resume ck.mpk b6.mpk
err_has "a dann checkpoint, this run is wgan-gp"

# ---- train-5: a stage in Python ----
PY=""
for py in python3 /usr/bin/python3; do
	if "$py" -c 'import msgpack, numpy' 2>/dev/null; then PY=$py; break; fi
done
if [ -n "$PY" ]; then
	pystage="$PY $ROOT/tests/python_stage.py"
	run "train-5.python-classifier" 0 train-step --quiet --method source-only --out py.mpk --metrics py.csv --lr 0.1 \
		--classifier "$pystage" --encoder-layers 16 --select last b6.mpk
	ok "train-5.loss-falls" awk -F, 'NR == 2 { a = $2 } END { exit !($2 < a) }' py.csv
	ok "train-5.predict-reads-python-params" sh -c 'encode --model py.mpk t.mpk | predict --model py.mpk | grep -q "^t0,"'
	run "train-5.stage-killed" 1 train-step --quiet --method dann --out killed.mpk --checkpoint killed-ck.mpk \
		--classifier "$pystage --die-after 30" --encoder-layers 16 b6.mpk
	err_has "train-step: classifier stage ($pystage --die-after 30) died"
	err_has "killing myself at request 30"
	ok "train-5.killed-no-temporaries" sh -c '! ls | grep -q "\.tmp\."'
	run "train-5.nan-loss" 1 train-step --quiet --method source-only --out nan.mpk \
		--classifier "$pystage --nan-after 40" --encoder-layers 16 b6.mpk
	err_has "the class loss is nan; stopped (the model of epoch"
	ok "train-5.nan-keeps-last-good-model" sh -c 'encode --model nan.mpk t.mpk | predict --model nan.mpk > /dev/null'
fi

# ---- train-6: stages that answer garbage or do not start ----
run "train-6.garbage" 1 train-step --quiet --method source-only --out g.mpk --classifier 'echo garbage; sleep 1' b6.mpk
err_has "classifier stage (echo garbage; sleep 1) answered garbage"
run "train-6.error-answer" 1 train-step --quiet --method dann --out g.mpk --discriminator 'discriminate --stage --method wgan-gp --layers 8' b6.mpk
err_has "discriminator stage (discriminate --stage --method wgan-gp --layers 8) reported an error: dann: this stage runs wgan-gp"
run "train-6.no-such-command" 1 train-step --quiet --method source-only --out g.mpk --encoder 'no-such-stage-command' b6.mpk
err_has "encoder stage (no-such-stage-command)"
run "train-6.stage-exits" 1 train-step --quiet --method source-only --out g.mpk --classifier 'echo oops >&2; exit 3' b6.mpk
err_has "died (exit status 3); its stderr ends: oops"
ok "train-6.no-model-left" test ! -e g.mpk
# a stage that answers quit but lingers (here its shell sleeps on) is killed after the
# grace (the stage timeout, 1 s, as it is shorter than 10 s), with a warning; the model stands
# (a sleep of its own length, so that another test run on the machine is not counted)
t0=$(date +%s)
zz="sleep 37.$$"
run "train-6.lingers-after-quit" 0 train-step --quiet --method source-only --out linger.mpk --stage-timeout 1 \
	--classifier "predict --stage; $zz" b6.mpk
err_is "train-step: classifier stage (predict --stage; $zz) did not exit within 1 s of answering quit; killed"
ok "train-6.lingers-not-waited-for" test $(( $(date +%s) - t0 )) -lt 20
ok "train-6.lingers-model" sh -c 'encode --model linger.mpk t.mpk | predict --model linger.mpk > /dev/null'
ok "train-6.lingers-nothing-left" sh -c "! pgrep -x -f '$zz' >/dev/null"

# ---- train-7: options and bad input ----
run "train-7.help" 0 train-step --help
out_has "--weight-schedule"
run "train-7.no-method" 2 train-step --out x.mpk b6.mpk
err_has "train-step: --method is required"
run "train-7.bad-method" 2 train-step --method cdann --out x.mpk b6.mpk
err_is "train-step: --method: cdann: expected source-only, target-only, dann or wgan-gp
Try 'train-step --help' for more information."
run "train-7.bad-lr" 2 train-step --method dann --out x.mpk --lr 0 b6.mpk
err_has "--lr: 0: must be at least"
run "train-7.bad-patience" 2 train-step --method dann --out x.mpk --patience x b6.mpk
err_has "--patience: x: not an integer"
run "train-7.unknown-option" 2 train-step --method dann --out x.mpk --bogus b6.mpk
err_has "unknown option --bogus"
run "train-7.layers-with-command" 2 train-step --method dann --out x.mpk --encoder 'encode --stage' --encoder-layers 8 b6.mpk
run "train-7.data-stream" 1 train-step --method dann --out x.mpk s.mpk
err_has "s.mpk: frame 1: kind \"data\", expected a minibatch stream"
head -c 3000 b6.mpk > trunc.mpk
run "train-7.truncated" 1 train-step --quiet --method dann --out x.mpk --encoder-layers 8 trunc.mpk
err_has "trunc.mpk: frame"
ok "train-7.no-model-left" test ! -e x.mpk

# ---- train-9: label shift (Zhao et al. 2019) and --align weighted ----
# The target moons keep every "a" and one "b" in six (about 83/17; the source 50/50).
# Marginal alignment then forces target "a" rows onto source "b": measured over seeds
# 1-3 DANN 0.53 0.63 0.59 vs source-only 0.69 0.77 0.70. --align weighted (IWDAN
# weights by EM on the target predictions) 0.79 0.61 0.51: no reliable fix (see
# docs/MATH.md), so only its mechanics are checked here.
awk -v n=150 -v noise=0.1 -v deg=35 -v s=2 -v p=t -f "$ROOT/tests/moons.awk" | awk -F, 'NR == 1 || $4 == "a" || NR % 6 == 0' > tls.csv
normalize --quiet --label-column label --domain target tls.csv > tls.mpk
batch --quiet --source s.mpk --target tls.mpk --epochs 100 --batch-size 32 --seed 1 --test-fraction 0 > bls.mpk
run "train-9.source-only" 0 train-step --quiet --method source-only --out ls-so.mpk --lr 1e-2 \
	--encoder "$enc" --classifier-layers 32 --select last --seed 1 bls.mpk
run "train-9.dann-marginal" 0 train-step --quiet --method dann --out ls-m.mpk --lr 1e-2 \
	--encoder "$enc" --classifier-layers 32 --discriminator-layers 32,32 $adv --seed 1 bls.mpk
run "train-9.dann-weighted" 0 train-step --quiet --method dann --out ls-w.mpk --lr 1e-2 --align weighted \
	--encoder "$enc" --classifier-layers 32 --discriminator-layers 32,32 $adv --seed 1 bls.mpk
ls_acc() {
	encode --model "$1" tls.mpk | predict --model "$1" --eval --metrics-json "$1.json" > /dev/null 2>&1
	sed -n 's/.*"accuracy": \([0-9.]*\).*/\1/p' "$1.json" | head -n 1
}
so=$(ls_acc ls-so.mpk); ma=$(ls_acc ls-m.mpk); we=$(ls_acc ls-w.mpk)
echo "two-moons with label shift, seed 1: source-only $so, dann $ma, dann --align weighted $we"
if awk -v s="$so" -v m="$ma" 'BEGIN { exit !(m < s - 0.05) }'; then pass "train-9.marginal-alignment-hurts ($ma < $so)"; else fail "train-9.marginal-alignment-hurts" "dann $ma, source-only $so"; fi
ok "train-9.weighted-config" sh -c 'normalize --show header ls-w.mpk | grep -q "\"align\": \"weighted\""'
ok "train-9.weighted-differs" sh -c '! cmp -s ls-m.mpk ls-w.mpk'
run "train-9.weighted-progress" 0 train-step --progress --method dann --out ls-w2.mpk --align weighted --epochs-max 2 \
	--encoder-layers 8 --classifier-layers 8 --discriminator-layers 8 bls.mpk
err_has "target class proportions (EM): "
run "train-9.weighted-wgan-gp" 0 train-step --quiet --method wgan-gp --out ls-wg.mpk --align weighted --epochs-max 2 \
	--encoder-layers 8 --classifier-layers 8 --discriminator-layers 8 bls.mpk
run "train-9.bad-align" 2 train-step --method dann --out x.mpk --align joint b6.mpk
err_has "train-step: --align: joint: expected marginal, weighted, conditional or conditional-entropy"
run "train-9.align-without-head" 2 train-step --method source-only --out x.mpk --align weighted b6.mpk
err_has "train-step: --align: source-only uses no domain head"
# ---- train-10: --align conditional (CDAN) and conditional-entropy (CDAN+E) ----
# The domain head reads p (x) z (latent 32 x 2 classes = 64 columns); the classifier sees
# every row. Mechanics here; the gradient in tests/unit/test_cond.c; what it wins on
# the samples in docs/PIPELINES.md.
run "train-10.dann-conditional" 0 train-step --quiet --method dann --out ls-c.mpk --lr 1e-2 --align conditional \
	--encoder "$enc" --classifier-layers 32 --discriminator-layers 32,32 $adv --seed 1 bls.mpk
run "train-10.dann-conditional-entropy" 0 train-step --quiet --method dann --out ls-ce.mpk --lr 1e-2 --align conditional-entropy \
	--encoder "$enc" --classifier-layers 32 --discriminator-layers 32,32 $adv --seed 1 bls.mpk
# the rotated moons without label shift (train-1)
for a in conditional conditional-entropy; do
	run "train-10.moons-$a" 0 train-step --quiet --method dann --out "moons-$a.mpk" --lr 1e-2 --align $a \
		--encoder "$enc" --classifier-layers 32 --discriminator-layers 32,32 $adv --seed 1 b100-1.mpk
	ca=$(target_acc "moons-$a.mpk"); so=$(target_acc source-only-1.mpk)
	echo "two-moons seed 1 target accuracy: source-only $so, dann --align $a $ca"
done
# measured: conditional 0.73 (no better than source-only 0.71 at this seed), CDAN+E 0.99
if awk -v d="$ca" -v s="$so" 'BEGIN { exit !(s <= d - 0.1) }'; then pass "train-10.moons-conditional-entropy-adapts ($ca)"; else fail "train-10.moons-conditional-entropy-adapts" "source-only $so vs $ca"; fi
co=$(ls_acc ls-c.mpk); ce=$(ls_acc ls-ce.mpk)
echo "two-moons with label shift, seed 1: dann --align conditional $co, conditional-entropy $ce"
ok "train-10.config" sh -c 'normalize --show header ls-c.mpk | grep -q "\"align\": \"conditional\""'
ok "train-10.differs" sh -c '! cmp -s ls-m.mpk ls-c.mpk && ! cmp -s ls-c.mpk ls-ce.mpk'
# the bundle's conditional head through discriminate --model: p computed with the
# bundle's classifier; one row per target row, probabilities in (0, 1)
encode --model ls-c.mpk tls.mpk > ls-c-z.mpk
run "train-10.discriminate-model" 0 discriminate --model ls-c.mpk ls-c-z.mpk
ntls=$(($(wc -l < tls.csv) - 1))
ok "train-10.discriminate-rows" awk -F, -v want="$ntls" 'NR > 1 { n++; if (!($3 > 0 && $3 < 1)) exit 1 } END { exit n != want }' "$OUT"
run "train-10.wgan-gp-conditional" 0 train-step --quiet --method wgan-gp --out ls-wc.mpk --align conditional --epochs-max 2 \
	--encoder-layers 8 --classifier-layers 8 --discriminator-layers 8 bls.mpk
run "train-10.entropy-wgan-gp" 2 train-step --method wgan-gp --out x.mpk --align conditional-entropy b6.mpk
err_has "train-step: --align: conditional-entropy weights the domain classifier's loss: dann only (wgan-gp: conditional)"
# checkpoint and exact resume keep the alignment; another --align is refused
c10="--quiet --method dann --align conditional-entropy --lr 1e-3 --encoder-layers 16,16 --classifier-layers 16 --discriminator-layers 16 --patience 100 --seed 7"
# shellcheck disable=SC2086
run "train-10.full" 0 train-step $c10 --out c-full.mpk b6.mpk
# shellcheck disable=SC2086
run "train-10.first-half" 0 train-step $c10 --epochs-max 3 --checkpoint c-ck.mpk --out c-half.mpk b6.mpk
# shellcheck disable=SC2086
run "train-10.resume" 0 train-step $c10 --resume c-ck.mpk --out c-resumed.mpk b6.mpk
ok "train-10.resume-identical" cmp c-full.mpk c-resumed.mpk
run "train-10.resume-other-align" 1 train-step --quiet --method dann --out x.mpk --resume c-ck.mpk b6.mpk
err_has "a checkpoint of --align conditional-entropy, this run is --align marginal"
run "train-9.bad-critic-lr" 2 train-step --method wgan-gp --out x.mpk --critic-lr 0 b6.mpk
err_has "--critic-lr: 0: must be at least"

# ---- train-8: valgrind on a short run (skipped without valgrind) ----
if command -v valgrind > /dev/null 2>&1 && [ -z "${SANITIZE:-}" ]; then
	batch --quiet --source s.mpk --target t.mpk --epochs 2 --batch-size 32 --seed 1 --labeled-per-class 3 > b2.mpk
	for m in dann wgan-gp; do
		run "train-8.valgrind-$m" 0 valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect \
			--trace-children=yes train-step --quiet --method "$m" --out "vg-$m.mpk" --checkpoint "vg-$m.ck" \
			--encoder-layers 8 --classifier-layers 8 --discriminator-layers 8 b2.mpk
	done
	run "train-8.valgrind-resume" 0 valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect \
		--trace-children=yes train-step --quiet --method dann --out vg-r.mpk --resume vg-dann.ck \
		--encoder-layers 8 --classifier-layers 8 --discriminator-layers 8 b2.mpk
fi
