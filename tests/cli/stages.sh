#!/bin/sh
# tests/cli/stages.sh: encode, predict and discriminate as inference filters and as
# training stages: help, option errors, the protocol spoken directly, truncated and
# wrong bundles.
. "$(dirname "$0")/../lib.sh"
cd "$TMP" || exit 1

# ---- stages-1: help and options ----
for f in encode predict discriminate; do
	run "stages-1.$f-help" 0 "$f" --help
	out_has "--layers"
	run "stages-1.$f-no-mode" 2 "$f"
	err_has "$f: needs --model FILE (inference) or --stage (training)"
	run "stages-1.$f-both-modes" 2 "$f" --stage --model x.mpk
	err_has "--stage and --model exclude each other"
	run "stages-1.$f-bad-act" 2 "$f" --stage --act sigmoid
	err_has "$f: --act: sigmoid: expected relu, leaky-relu or tanh"
	run "stages-1.$f-bad-layers" 2 "$f" --stage --layers 8,0
	err_has "$f: --layers: 0: must be at least 1"
	run "stages-1.$f-bad-dropout" 2 "$f" --stage --dropout 1
	run "stages-1.$f-unknown" 2 "$f" --stage --frobnicate
	err_has "unknown option --frobnicate"
	run "stages-1.$f-arch-with-model" 2 "$f" --model x.mpk --layers 8
	run "stages-1.$f-stage-eof" 0 "$f" --stage
	printf 'garbage' > garbage.bin
	run_in "stages-1.$f-stage-garbage" 1 garbage.bin "$f" --stage
	err_has "$f: <requests>: frame 1:"
done
run "stages-1.discriminate-bad-method" 2 discriminate --stage --method cdan
err_has "--method: cdan: expected dann or wgan-gp"
run "stages-1.critic-batchnorm" 2 discriminate --stage --method wgan-gp --norm batch
err_has "the WGAN-GP critic takes no BatchNorm"
run "stages-1.predict-bad-format" 2 predict --model x.mpk --format json
run "stages-1.model-missing" 1 encode --model nonexistent.mpk
err_is "encode: nonexistent.mpk: cannot open: No such file or directory"

# ---- stages-2: the protocol, spoken from Python ----
PY=""
for py in python3 /usr/bin/python3; do
	if "$py" -c 'import msgpack, numpy' 2>/dev/null; then PY=$py; break; fi
done
if [ -n "$PY" ]; then
	cat > proto.py <<'PYEOF'
import subprocess, sys
import msgpack, numpy as np
def T(a, dt="f32"):
    a = np.ascontiguousarray(a, "<f4" if dt == "f32" else "<i4")
    return {"dtype": dt, "shape": list(a.shape), "data": a.tobytes()}
def A(t):
    return np.frombuffer(t["data"], {"f32": "<f4", "i32": "<i4"}[t["dtype"]]).reshape(t["shape"])
def start(cmd):
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
    return p, msgpack.Unpacker(p.stdout, raw=False)
def ask(s, req):
    p, u = s
    p.stdin.write(msgpack.packb(req, use_bin_type=True)); p.stdin.flush()
    return next(u)
def check(name, cond, why=""):
    print(("PASS " if cond else "FAIL ") + name + ("" if cond else ": " + why))
rng = np.random.default_rng(0)
x = rng.normal(size=(6, 5)).astype(np.float32)
enc = start(["encode", "--stage", "--layers", "4", "--dropout", "0"])
r = ask(enc, {"type": "forward", "x": T(x)})
check("stages-2.uninitialised", r["type"] == "error" and "not initialised" in r["message"], str(r))
r = ask(enc, {"type": "init", "in": 5, "seed": 3, "optimizer": {"kind": "sgd", "weight_decay": 0}})
check("stages-2.init", r == {"type": "ok", "out": 4, "nparams": 4 * 5 + 4 + 4 + 4}, str(r))
z = A(ask(enc, {"type": "forward", "x": T(x), "train": True})["y"])
check("stages-2.forward-shape", z.shape == (6, 4), str(z.shape))
r = ask(enc, {"type": "backward", "dy": T(np.ones((6, 4))), "want_dx": True})
check("stages-2.backward-dx", A(r["dx"]).shape == (6, 5), str(r.keys()))
r = ask(enc, {"type": "backward", "dy": T(np.ones((3, 4)))})
check("stages-2.backward-wrong-rows", r["type"] == "error", str(r))
saved = ask(enc, {"type": "save", "state": True})["params"]
check("stages-2.save", saved["type"] == "params" and saved["stage"] == "encoder" and "state" in saved, str(saved.keys()))
ask(enc, {"type": "step", "lr": 0.5})
z2 = A(ask(enc, {"type": "forward", "x": T(x)})["y"])
ask(enc, {"type": "load", "params": saved})
z3 = A(ask(enc, {"type": "forward", "x": T(x)})["y"])
check("stages-2.step-changes", not np.array_equal(z2, z3))
z4 = A(ask(enc, {"type": "forward", "x": T(x)})["y"])
check("stages-2.load-restores", np.array_equal(z3, z4))
r = ask(enc, {"type": "frobnicate"})
check("stages-2.unknown-request", r["type"] == "error" and "unknown request" in r["message"], str(r))
check("stages-2.quit", ask(enc, {"type": "quit"}) == {"type": "ok"})
check("stages-2.exit-0", enc[0].wait() == 0)

cls = start(["predict", "--stage", "--layers", "8"])
ask(cls, {"type": "init", "in": 4, "out": 3, "seed": 1})
y = np.array([0, 1, 2, -1, 0, 1], np.int32)
losses = []
for i in range(30):
    r = ask(cls, {"type": "loss", "z": T(z), "y": T(y, "i32"), "lr": 0.05})
    losses.append(r["loss"])
check("stages-2.classifier-loss-falls", losses[-1] < losses[0], str(losses[:1] + losses[-1:]))
check("stages-2.classifier-fields", r["n"] == 5 and A(r["dz"]).shape == (6, 4) and A(r["pred"]).shape == (6,), str(r.keys()))
dz = A(r["dz"])
check("stages-2.unlabelled-row-no-gradient", np.all(dz[3] == 0), str(dz[3]))
r = ask(cls, {"type": "loss", "z": T(z), "y": T(np.array([0, 1, 5, 0, 0, 0], np.int32), "i32")})
check("stages-2.classifier-bad-label", r["type"] == "error" and "label 5" in r["message"], str(r))
ask(cls, {"type": "quit"})

d = np.array([0, 0, 0, 1, 1, 1], np.int32)
dis = start(["discriminate", "--stage", "--method", "dann", "--layers", "8"])
ask(dis, {"type": "init", "in": 4, "seed": 1})
r0 = ask(dis, {"type": "dann", "z": T(z), "d": T(d, "i32"), "lambda": 0.0})
check("stages-2.dann-lambda-0", np.all(A(r0["dz"]) == 0), str(A(r0["dz"])))
r1 = ask(dis, {"type": "dann", "z": T(z), "d": T(d, "i32"), "lambda": 1.0, "lr": 0.01})
check("stages-2.dann-fields", 0 <= r1["acc"] <= 1 and A(r1["dz"]).shape == (6, 4), str(r1.keys()))
ask(dis, {"type": "quit"})

cr = start(["discriminate", "--stage", "--method", "wgan-gp", "--layers", "8"])
ask(cr, {"type": "init", "in": 4, "seed": 1})
before = ask(cr, {"type": "save"})["params"]["tensors"]["l0.w"]["data"]
g = ask(cr, {"type": "gen_loss", "zt": T(z[3:])})
after = ask(cr, {"type": "save"})["params"]["tensors"]["l0.w"]["data"]
check("stages-2.gen-loss-no-critic-update", before == after and A(g["dzt"]).shape == (3, 4))
r = ask(cr, {"type": "critic_step", "zs": T(z[:3]), "zt": T(z[3:]), "gp_weight": 10, "lr": 0.01, "gen": True})
after2 = ask(cr, {"type": "save"})["params"]["tensors"]["l0.w"]["data"]
check("stages-2.critic-step-updates", after2 != after and "gap" in r and A(r["dzt"]).shape == (3, 4), str(r.keys()))
r = ask(cr, {"type": "dann", "z": T(z), "d": T(d, "i32"), "lambda": 1.0})
check("stages-2.critic-refuses-dann", r["type"] == "error", str(r))
ask(cr, {"type": "quit"})
PYEOF
	"$PY" proto.py 2>&1
fi

# ---- stages-3: bundles ----
awk -v n=40 -v noise=0.1 -v deg=0 -v s=1 -v p=s -f "$ROOT/tests/moons.awk" > source.csv
awk -v n=40 -v noise=0.1 -v deg=30 -v s=2 -v p=t -f "$ROOT/tests/moons.awk" > target.csv
normalize --quiet --label-column label --domain source source.csv > s.mpk
normalize --quiet --label-column label --domain target target.csv > t.mpk
batch --quiet --source s.mpk --target t.mpk --epochs 2 --batch-size 16 --seed 1 > b.mpk
train-step --quiet --method dann --out m.mpk --encoder-layers 8 --classifier-layers 8 --discriminator-layers 8 b.mpk
train-step --quiet --method source-only --out so.mpk --encoder-layers 8 --classifier-layers 8 b.mpk
run "stages-3.encode" 0 encode --model m.mpk t.mpk
encode --model m.mpk t.mpk > z.mpk
ok "stages-3.latent-features" sh -c 'normalize --show header z.mpk | grep -q "\"z7\""'
run "stages-3.predict-eval" 0 predict --model m.mpk --eval --metrics-json m.json z.mpk
err_has "accuracy"
ok "stages-3.metrics-json" grep -q '"balanced_accuracy"' m.json
run "stages-3.predict-stream" 0 predict --model m.mpk --format stream z.mpk
ok "stages-3.predict-stream-readable" sh -c 'predict --model m.mpk --format stream z.mpk | normalize --show shapes | grep -q "x=f32\[80,2\]"'
run "stages-3.discriminate" 0 discriminate --model m.mpk z.mpk
out_has "id,domain,p_target"
run "stages-3.no-discriminator" 1 discriminate --model so.mpk z.mpk
err_has "so.mpk: the bundle has no discriminator"
run "stages-3.encode-wrong-features" 1 encode --model m.mpk z.mpk
err_has "features, the model m.mpk expects 2"
run "stages-3.predict-raw-input" 1 predict --model m.mpk t.mpk
err_has "pipe the data through encode --model m.mpk first"
run "stages-3.data-as-model" 1 encode --model s.mpk t.mpk
err_has "s.mpk: frame 1: kind \"data\", expected a model bundle"
# every truncated prefix of the bundle: exit 1 with a message naming the file, no crash
size=$(wc -c < m.mpk)
bad=0
i=0
while [ "$i" -lt "$size" ]; do
	head -c "$i" m.mpk > cut.mpk
	for f in encode predict discriminate; do
		"$f" --model cut.mpk z.mpk > /dev/null 2> cut.err < /dev/null
		rc=$?
		if [ "$rc" -ne 1 ] || ! grep -q "^$f: cut.mpk" cut.err; then
			bad=$((bad + 1))
			[ "$bad" -le 3 ] && echo "  $f on $i bytes: exit $rc: $(head -c 200 cut.err)"
		fi
	done
	i=$((i + 61))
done
if [ "$bad" -eq 0 ]; then pass "stages-3.truncated-bundles"; else fail "stages-3.truncated-bundles" "$bad runs"; fi
