# tests/moons.awk: the two-moons toy problem of Ganin et al. as CSV id,x1,x2,label.
#   awk -v n=150 -v noise=0.1 -v deg=35 -v s=2 -v p=t -f tests/moons.awk
# n points per moon (labels a, b), Gaussian noise sd, rotation by deg degrees about
# (0.5, 0.25), seed s of a Park-Miller generator (same numbers under any awk), id prefix p.
function u() { seed = (16807 * seed) % 2147483647; return seed / 2147483647 }
function gauss() { return sqrt(-2 * log(1 - u())) * cos(6.283185307179586 * u()) }
BEGIN {
	pi = 3.141592653589793; a = deg * pi / 180; seed = s + 12345
	print "id,x1,x2,label"
	for (i = 0; i < 2 * n; i++) {
		c = i % 2; t = pi * u()
		if (c == 0) { x = cos(t); y = sin(t) } else { x = 1 - cos(t); y = 0.5 - sin(t) }
		x += noise * gauss(); y += noise * gauss()
		x -= 0.5; y -= 0.25
		xr = x * cos(a) - y * sin(a) + 0.5; yr = x * sin(a) + y * cos(a) + 0.25
		printf "%s%d,%.6f,%.6f,%s\n", p, i, xr, yr, c ? "b" : "a"
	}
}
