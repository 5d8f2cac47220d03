#!/bin/sh
# tests/cli/format_python.sh: the Python reader of docs/FORMAT.md reads a stream made by
# normalize; its values, ids, labels and domains match the CSV input. Without
# python3-msgpack or numpy it prints nothing and exits 0.
. "$(dirname "$0")/../lib.sh"
# the Debian packages live in /usr/bin/python3, which another python3 on PATH may hide
PY=
for p in python3 /usr/bin/python3; do
	if "$p" -c 'import msgpack, numpy' 2>/dev/null; then PY=$p; break; fi
done
[ -n "$PY" ] || exit 0
F="$ROOT/tests/fixtures/normalize"
# the snippet: the python block after the "<!-- reader -->" marker
awk '/<!-- reader -->/ { on = 1; next } on && /^```python/ { inb = 1; next } inb && /^```/ { exit } inb { print }' \
	"$ROOT/docs/FORMAT.md" >"$TMP/reader.py"
ok format-python-1.1 test "$(wc -l <"$TMP/reader.py")" -ge 10 -a "$(wc -l <"$TMP/reader.py")" -le 20
cat "$TMP/reader.py" - >"$TMP/check.py" <<'PY'
import csv, math
rows = list(csv.reader(open(sys.argv[2])))
genes, body = rows[0][1:5], rows[1:]
assert header["features"] == genes, header["features"]
assert ids == [r[0] for r in body], ids
want = np.array([[math.log2(float(v) + 1) for v in r[1:5]] for r in body], dtype=np.float32)
assert X.shape == want.shape and np.allclose(X, want, rtol=1e-6, atol=1e-6), (X, want)
labels = [header["classes"][k] if k >= 0 else "" for k in y]
assert labels == [r[5] for r in body], labels
assert all(header["domains"][k] == "labelled" for k in d)
print("ok")
PY
normalize -q --block-rows 3 --label-column label --log2 "$F/labelled.csv" >"$TMP/s.mpk"
run format-python-1.2 0 "$PY" "$TMP/check.py" "$TMP/s.mpk" "$F/labelled.csv"
out_has "ok"
# a stream without its end frame is refused by the snippet
head -c 200 "$TMP/s.mpk" >"$TMP/cut.mpk"
run format-python-1.3 1 "$PY" "$TMP/check.py" "$TMP/cut.mpk" "$F/labelled.csv"
