/* gen-tiles: synthetic H&E-like tiles for several organs, benign and malignant.
 *
 * Writes PNG folders DIR/ORGAN_benign/ and DIR/ORGAN_malignant/ (the layout that
 * `stain-norm --to-stream --label-from-dir` reads: domain = organ, class = benign or
 * malignant), each with --count tiles named ORGAN_CLASS_NNNN.png.
 *
 * A tile is rendered in optical density: an eosin field (stroma, with an organ-specific
 * texture and white spaces: fat in breast, gland lumens in colon and prostate, alveoli in
 * lung) plus hematoxylin nuclei, then I = Io * exp(-(H cH + E cE + noise)). Each organ
 * has its own stain vectors, stain strengths and illumination Io (the domain shift).
 * Malignant tiles have more, larger, darker and more irregular nuclei (the class
 * signal); benign nuclei are small, round and sparse.
 *
 * One magnification at every --size: nuclei and spaces keep their size in pixels and
 * their number grows with the tile's area (a 256x256 tile holds as much tissue as
 * sixteen 64x64 tiles).
 *
 * Deterministic: tile i of (organ, class) draws from its own RNG stream of --seed, so
 * the same --seed gives the same files, and changing --count keeps the first tiles.
 *
 * Options: see usage(). Exit: 0 ok, 1 I/O error, 2 usage error. */
#include "image.h"
#include "rng.h"
#include "util.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
	const char *name;
	double h[3], e[3];     /* stain OD vectors (R, G, B), normalised below */
	double ch, ce;         /* stain strengths */
	double io;             /* illumination */
	double freq;           /* stroma texture frequency (cycles per 64 px) */
	int holes;             /* mean number of white spaces per 64x64 px */
	double hole_r;         /* their radius (px) */
	double nuc_r;          /* benign nucleus radius (px) */
} Organ;

static const Organ organs[] = {
	{ "breast",   { 0.65, 0.70, 0.29 }, { 0.07, 0.99, 0.11 }, 1.00, 0.45, 245, 2.0, 1, 12.0, 2.4 },
	{ "colon",    { 0.55, 0.75, 0.38 }, { 0.20, 0.80, 0.56 }, 1.10, 0.60, 240, 3.0, 1,  9.0, 2.6 },
	{ "lung",     { 0.46, 0.74, 0.49 }, { 0.28, 0.74, 0.61 }, 0.85, 0.35, 250, 1.5, 3,  7.0, 2.2 },
	{ "prostate", { 0.60, 0.72, 0.35 }, { 0.15, 0.85, 0.50 }, 1.20, 0.55, 236, 2.5, 2,  6.0, 2.5 },
};
#define NORGANS ((int)(sizeof organs / sizeof *organs))

static void usage(FILE *fp)
{
	fprintf(fp,
	"Usage: gen-tiles [OPTIONS]\n"
	"Write synthetic H&E-like tiles as PNG folders DIR/ORGAN_benign/ and DIR/ORGAN_malignant/.\n"
	"\n"
	"  -o, --out DIR        output folder, created if missing (default: tiles)\n"
	"      --size N         tile side in pixels, 16..1024 (default: 64)\n"
	"  -n, --count N        tiles per organ and class (default: 100)\n"
	"      --organs LIST    comma-separated, of breast,colon,lung,prostate\n"
	"                       (default: breast,colon,lung,prostate)\n"
	"      --seed N         random seed (default: 1)\n"
	"  -q, --quiet          no summary line\n"
	"  -h, --help           this help\n");
}

static void mkdir_p(const char *path)
{
	char *p = xstrdup(path);
	for (char *s = p + 1; *s; s++) {
		if (*s != '/') continue;
		*s = 0;
		if (mkdir(p, 0777) != 0 && errno != EEXIST) die("%s: cannot create folder:", p);
		*s = '/';
	}
	if (mkdir(p, 0777) != 0 && errno != EEXIST) die("%s: cannot create folder:", p);
	free(p);
}

static void normalise3(double v[3])
{
	double n = sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
	for (int k = 0; k < 3; k++) v[k] /= n;
}

static void render(Image *im, const Organ *o, int malignant, Rng *rng)
{
	int S = im->h;
	/* one magnification: sizes are in pixels, counts grow with the area */
	double sc = S / 64.0;
	size_t np = (size_t)S * S;
	double *ch = xcalloc(np, sizeof *ch), *ce = xmalloc(np * sizeof *ce);
	double hv[3], ev[3];
	memcpy(hv, o->h, sizeof hv);
	memcpy(ev, o->e, sizeof ev);
	normalise3(hv);
	normalise3(ev);
	/* per-tile stain jitter: +-10 % strength */
	double jh = o->ch * (0.9 + 0.2 * rng_uniform(rng)), je = o->ce * (0.9 + 0.2 * rng_uniform(rng));
	/* stroma: eosin with a texture of 4 random plane waves */
	double wk[4][3];
	for (int i = 0; i < 4; i++) {
		double ang = 2 * M_PI * rng_uniform(rng);
		double f = o->freq * (0.6 + 0.8 * rng_uniform(rng)) * 2 * M_PI / 64.0;
		wk[i][0] = f * cos(ang);
		wk[i][1] = f * sin(ang);
		wk[i][2] = 2 * M_PI * rng_uniform(rng);
	}
	for (int y = 0; y < S; y++)
		for (int x = 0; x < S; x++) {
			double t = 0;
			for (int i = 0; i < 4; i++) t += sin(wk[i][0] * x + wk[i][1] * y + wk[i][2]);
			ce[(size_t)y * S + x] = je * (1 + 0.12 * t);
			ch[(size_t)y * S + x] = 0.08 * jh;
		}
	/* white spaces */
	int holes = (int)rng_poisson(rng, o->holes * sc * sc);
	for (int k = 0; k < holes; k++) {
		double cx = rng_uniform(rng) * S, cy = rng_uniform(rng) * S;
		double r = o->hole_r * (0.6 + 0.8 * rng_uniform(rng));
		int y0 = (int)fmax(0, floor(cy - r)), y1 = (int)fmin(S - 1, ceil(cy + r));
		int x0 = (int)fmax(0, floor(cx - r)), x1 = (int)fmin(S - 1, ceil(cx + r));
		for (int y = y0; y <= y1; y++)
			for (int x = x0; x <= x1; x++) {
				double d = hypot(x - cx, y - cy) / r;
				if (d < 1) {
					double keep = d < 0.8 ? 0.03 : 0.03 + (d - 0.8) / 0.2 * 0.97;
					ce[(size_t)y * S + x] *= keep;
					ch[(size_t)y * S + x] *= keep;
				}
			}
	}
	/* nuclei: malignant = more, larger, darker, irregular */
	double density = malignant ? 16 : 7;
	double r0 = o->nuc_r * (malignant ? 1.6 : 1.0);
	double irreg = malignant ? 0.28 : 0.05;
	double dark = malignant ? 1.35 : 1.0;
	int nn = (int)rng_poisson(rng, density * sc * sc);
	for (int k = 0; k < nn; k++) {
		double cx = rng_uniform(rng) * S, cy = rng_uniform(rng) * S;
		double r = r0 * (0.8 + 0.4 * rng_uniform(rng));
		double elong = 1 + (malignant ? 0.5 : 0.2) * rng_uniform(rng);
		double rot = M_PI * rng_uniform(rng);
		double a2 = irreg * rng_uniform(rng), a3 = irreg * rng_uniform(rng);
		double p2 = 2 * M_PI * rng_uniform(rng), p3 = 2 * M_PI * rng_uniform(rng);
		double c = dark * jh * (0.85 + 0.3 * rng_uniform(rng));
		int R = (int)ceil(r * elong * (1 + 2 * irreg)) + 2;
		for (int y = (int)cy - R; y <= (int)cy + R; y++)
			for (int x = (int)cx - R; x <= (int)cx + R; x++) {
				if (x < 0 || y < 0 || x >= S || y >= S) continue;
				double dx = x - cx, dy = y - cy;
				double u = dx * cos(rot) + dy * sin(rot), v = -dx * sin(rot) + dy * cos(rot);
				double th = atan2(v, u);
				double rr = r * (1 + a2 * cos(2 * th + p2) + a3 * cos(3 * th + p3));
				double d = hypot(u / elong, v) / rr;
				if (d < 1.15) {
					double w = d < 0.85 ? 1 : (1.15 - d) / 0.3;
					size_t i = (size_t)y * S + x;
					double val = c * w * (0.9 + 0.2 * rng_uniform(rng));
					if (val > ch[i]) ch[i] = val;
					ce[i] *= 1 - 0.6 * w;
				}
			}
	}
	for (size_t i = 0; i < np; i++)
		for (int k = 0; k < 3; k++) {
			double od = hv[k] * ch[i] + ev[k] * ce[i] + 0.015 * rng_normal(rng);
			double v = o->io * exp(-od);
			im->px[3 * i + k] = v <= 0 ? 0 : v >= 255 ? 255 : (uint8_t)floor(v + 0.5);
		}
	free(ch);
	free(ce);
}

int main(int argc, char **argv)
{
	util_init(argv[0]);
	const char *out = "tiles", *organ_list = "breast,colon,lung,prostate";
	long size = 64, count = 100;
	unsigned long long seed = 1;
	int q = 0;
	static const struct option lo[] = {
		{ "out", required_argument, 0, 'o' }, { "size", required_argument, 0, 's' },
		{ "count", required_argument, 0, 'n' }, { "organs", required_argument, 0, 'g' },
		{ "seed", required_argument, 0, 'S' }, { "quiet", no_argument, 0, 'q' },
		{ "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 }
	};
	int c;
	while ((c = getopt_long(argc, argv, "o:n:qh", lo, NULL)) != -1) {
		switch (c) {
		case 'o': out = optarg; break;
		case 's': size = parse_long("--size", optarg, 16, 1024); break;
		case 'n': count = parse_long("--count", optarg, 1, 1000000); break;
		case 'g': organ_list = optarg; break;
		case 'S': seed = (unsigned long long)parse_long("--seed", optarg, 0, __LONG_MAX__); break;
		case 'q': q = 1; break;
		case 'h': usage(stdout); return 0;
		default: usage_error("unknown option");
		}
	}
	if (optind < argc) usage_error("unexpected argument '%s'", argv[optind]);
	int chosen[NORGANS], nchosen = 0;
	char *list = xstrdup(organ_list), *save = NULL;
	for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		int k;
		for (k = 0; k < NORGANS; k++)
			if (strcmp(tok, organs[k].name) == 0) break;
		if (k == NORGANS) usage_error("--organs: unknown organ '%s' (breast, colon, lung, prostate)", tok);
		for (int j = 0; j < nchosen; j++)
			if (chosen[j] == k) usage_error("--organs: '%s' given twice", tok);
		chosen[nchosen++] = k;
	}
	free(list);
	if (nchosen == 0) usage_error("--organs: no organ given");
	Image im;
	image_alloc(&im, (int)size, (int)size);
	long written = 0;
	for (int oi = 0; oi < nchosen; oi++) {
		const Organ *o = &organs[chosen[oi]];
		for (int cls = 0; cls < 2; cls++) {
			const char *cname = cls ? "malignant" : "benign";
			char *dir = xasprintf("%s/%s_%s", out, o->name, cname);
			mkdir_p(dir);
			for (long i = 0; i < count; i++) {
				Rng rng;
				rng_seed2(&rng, seed, ((uint64_t)(chosen[oi] * 2 + cls) << 32) + (uint64_t)i);
				render(&im, o, cls, &rng);
				char *path = xasprintf("%s/%s_%s_%04ld.png", dir, o->name, cname, i);
				image_write_png(path, &im);
				free(path);
				written++;
			}
			free(dir);
		}
	}
	image_free(&im);
	if (!q) fprintf(stderr, "gen-tiles: wrote %ld tiles of %ldx%ld to %s\n", written, size, size, out);
	return 0;
}
