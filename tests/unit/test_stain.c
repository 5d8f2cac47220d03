/* test_stain.c: Macenko, Reinhard and CIELAB against the numpy reference of
 * tests/stain_ref.py (fixtures in tests/fixtures/stain/), degenerate images (no NaN,
 * ever), percentiles, the 3x3 eigen-solver, PNG/JPEG readers on damaged input and the
 * image stream round trip.
 *
 * Tolerances: the stain matrix and concentrations within 2e-3 (the reference works in
 * numpy double with eigh and lstsq, the C code with Jacobi and the normal equations: the
 * same numbers up to rounding; eigenvector signs change no result, see docs/STAIN.md);
 * output pixels within 2 grey levels (8-bit rounding of values that differ in the last
 * bits, and percentiles that fall between two nearly equal order statistics). */
#include "check.h"
#include "image.h"
#include "rng.h"
#include "stain.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *fixture_dir;

static char *fx(const char *name) { return xasprintf("%s/%s", fixture_dir, name); }

static void load(const char *name, Image *im)
{
	char err[256];
	char *p = fx(name);
	if (image_read(p, IMG_AUTO, im, err, sizeof err) != 0) {
		printf("FAIL load %s: %s\n", p, err);
		exit(1);
	}
	free(p);
}

/* the values of one line "name: v v v ..." of params.txt */
static int params_line(const char *name, double *v, int max)
{
	char *p = fx("params.txt");
	FILE *fp = fopen(p, "r");
	free(p);
	if (!fp) return 0;
	char line[1024];
	int n = 0;
	size_t ln = strlen(name);
	while (fgets(line, sizeof line, fp)) {
		if (strncmp(line, name, ln) != 0 || line[ln] != ':') continue;
		char *s = line + ln + 1, *end;
		while (n < max) {
			double x = strtod(s, &end);
			if (end == s) break;
			v[n++] = x;
			s = end;
		}
	}
	fclose(fp);
	return n;
}

static void compare_png(const char *name, const Image *got, const char *want_file)
{
	Image want;
	load(want_file, &want);
	char buf[160];
	if (want.h != got->h || want.w != got->w) {
		snprintf(buf, sizeof buf, "%s (size)", name);
		CHECK(buf, 0);
		image_free(&want);
		return;
	}
	long n = (long)want.h * want.w * 3, over1 = 0;
	int maxd = 0;
	for (long i = 0; i < n; i++) {
		int d = abs((int)got->px[i] - (int)want.px[i]);
		if (d > maxd) maxd = d;
		if (d > 1) over1++;
	}
	snprintf(buf, sizeof buf, "%s (maxdiff %d grey levels, %ld of %ld values differ by more than 1)", name, maxd, over1, n);
	CHECK(buf, maxd <= 2 && over1 <= n / 1000);
	image_free(&want);
}

static void lab_against_skimage(void)
{
	char *p = fx("lab.txt");
	FILE *fp = fopen(p, "r");
	free(p);
	CHECK("stain-1.1 lab.txt present", fp != NULL);
	if (!fp) return;
	char line[256];
	int n = 0;
	double maxd = 0;
	while (fgets(line, sizeof line, fp)) {
		if (line[0] == '#') continue;
		int r, g, b;
		double want[3], got[3];
		if (sscanf(line, "%d %d %d %lf %lf %lf", &r, &g, &b, &want[0], &want[1], &want[2]) != 6) continue;
		uint8_t rgb[3] = { (uint8_t)r, (uint8_t)g, (uint8_t)b };
		rgb8_to_lab(rgb, got);
		for (int k = 0; k < 3; k++)
			if (fabs(got[k] - want[k]) > maxd) maxd = fabs(got[k] - want[k]);
		n++;
	}
	fclose(fp);
	char buf[128];
	snprintf(buf, sizeof buf, "stain-1.2 rgb8_to_lab = skimage.color.rgb2lab on %d colours (maxdiff %.2g)", n, maxd);
	/* skimage uses the rounded CIE constants 0.008856 and 7.787 */
	CHECK(buf, n >= 60 && maxd < 2e-3);
	/* sRGB -> CIELAB -> sRGB is exact on 8-bit values */
	long bad = 0, tried = 0;
	for (int r = 0; r < 256; r += 3)
		for (int g = 0; g < 256; g += 5)
			for (int b = 0; b < 256; b += 7) {
				uint8_t in[3] = { (uint8_t)r, (uint8_t)g, (uint8_t)b }, out[3];
				double lab[3];
				rgb8_to_lab(in, lab);
				lab_to_rgb8(lab, out);
				bad += memcmp(in, out, 3) != 0;
				tried++;
			}
	snprintf(buf, sizeof buf, "stain-1.3 RGB -> LAB -> RGB round trip exact (%ld colours, %ld off)", tried, bad);
	CHECK(buf, bad == 0);
}

static void helpers(void)
{
	double a[] = { 4, 1, 3, 2 };
	CHECK("stain-2.1 percentile 50 of 1..4 = 2.5", fabs(percentile(a, 4, 50) - 2.5) < 1e-12);
	double b[] = { 4, 1, 3, 2 };
	CHECK("stain-2.2 percentile 1 of 1..4 = 1.03", fabs(percentile(b, 4, 1) - 1.03) < 1e-12);
	double c[] = { 4, 1, 3, 2 };
	CHECK("stain-2.3 percentile 99 of 1..4 = 3.97", fabs(percentile(c, 4, 99) - 3.97) < 1e-12);
	double d[] = { 7 };
	CHECK("stain-2.4 percentile of one value", percentile(d, 1, 99) == 7);
	/* a larger shuffled set: percentile q of 0..999 is 9.99 q */
	double *e = xmallocarray(1000, sizeof *e);
	for (int i = 0; i < 1000; i++) e[i] = (double)((i * 379) % 1000);
	CHECK("stain-2.5 percentile 37.5 of a permutation of 0..999", fabs(percentile(e, 1000, 37.5) - 374.625) < 1e-9);
	free(e);
	double m[3][3] = { { 4, 1, 0.5 }, { 1, 3, 0.2 }, { 0.5, 0.2, 1 } }, w[3], v[3][3];
	sym3_eig(m, w, v);
	double res = 0;
	for (int j = 0; j < 3; j++)
		for (int i = 0; i < 3; i++) {
			double av = 0;
			for (int k = 0; k < 3; k++) av += m[i][k] * v[k][j];
			res = fmax(res, fabs(av - w[j] * v[i][j]));
		}
	char buf[128];
	snprintf(buf, sizeof buf, "stain-2.6 sym3_eig: A v = w v (maxdiff %.2g), ascending", res);
	CHECK(buf, res < 1e-12 && w[0] <= w[1] && w[1] <= w[2]);
	uint8_t white[3 * 4] = { 255, 255, 255, 250, 250, 250, 100, 50, 120, 0, 0, 0 };
	CHECK("stain-2.7 tissue fraction by OD: 2 of 4", tissue_fraction(white, 4, TISSUE_OD, 0.15, 240) == 0.5);
	CHECK("stain-2.8 tissue fraction by lightness: 2 of 4", tissue_fraction(white, 4, TISSUE_LIGHTNESS, 0.8, 240) == 0.5);
}

static void against_reference(void)
{
	Image ihc, he, out;
	load("ihc_crop.png", &ihc);
	load("he_synth.png", &he);
	long n = (long)ihc.h * ihc.w;
	double want[8];
	char buf[160];
	const char *names[2] = { "macenko_he", "macenko_ihc" };
	Image *imgs[2] = { &he, &ihc };
	Macenko fitted_he;
	for (int t = 0; t < 2; t++) {
		Macenko m;
		macenko_defaults(&m);
		int st = macenko_estimate(&m, imgs[t]->px, (long)imgs[t]->h * imgs[t]->w);
		int nw = params_line(names[t], want, 8);
		double maxd = 0;
		for (int k = 0; k < 6; k++) maxd = fmax(maxd, fabs((&m.he[0][0])[k] - want[k]));
		for (int k = 0; k < 2; k++) maxd = fmax(maxd, fabs(m.maxc[k] - want[6 + k]));
		snprintf(buf, sizeof buf, "stain-3.%d %s: stain matrix and maxC = numpy (maxdiff %.2g)", t + 1, names[t], maxd);
		CHECK(buf, st == STAIN_OK && nw == 8 && maxd < 2e-3);
		if (t == 0) fitted_he = m;
	}
	Macenko def;
	macenko_defaults(&def);
	image_alloc(&out, ihc.h, ihc.w);
	CHECK("stain-3.3 macenko ihc -> default reference: ok", macenko_apply(&def, ihc.px, out.px, n) == STAIN_OK);
	compare_png("stain-3.4 macenko ihc -> default reference = numpy", &out, "macenko_ihc_default.png");
	image_free(&out);
	image_alloc(&out, he.h, he.w);
	CHECK("stain-3.5 macenko he -> default reference: ok", macenko_apply(&def, he.px, out.px, (long)he.h * he.w) == STAIN_OK);
	compare_png("stain-3.6 macenko he -> default reference = numpy", &out, "macenko_he_default.png");
	image_free(&out);
	/* in place, to the stain matrix fitted on the synthetic H&E tile */
	Image ip;
	image_alloc(&ip, ihc.h, ihc.w);
	memcpy(ip.px, ihc.px, (size_t)n * 3);
	CHECK("stain-3.7 macenko ihc -> fitted he (in place): ok", macenko_apply(&fitted_he, ip.px, ip.px, n) == STAIN_OK);
	compare_png("stain-3.8 macenko ihc -> fitted he = numpy", &ip, "macenko_ihc_to_he.png");
	image_free(&ip);

	Reinhard r;
	reinhard_estimate(&r, he.px, (long)he.h * he.w);
	int nw = params_line("reinhard_he", want, 6);
	double maxd = 0;
	for (int k = 0; k < 3; k++) maxd = fmax(maxd, fmax(fabs(r.mean[k] - want[k]), fabs(r.std[k] - want[3 + k])));
	snprintf(buf, sizeof buf, "stain-3.9 reinhard he: LAB mean and std = numpy (maxdiff %.2g)", maxd);
	CHECK(buf, nw == 6 && maxd < 1e-6);
	image_alloc(&out, ihc.h, ihc.w);
	CHECK("stain-3.10 reinhard ihc -> he: ok", reinhard_apply(&r, ihc.px, out.px, n) == STAIN_OK);
	compare_png("stain-3.11 reinhard ihc -> he = numpy", &out, "reinhard_ihc_to_he.png");
	image_free(&out);
	/* the normalised image really moved towards the reference */
	image_alloc(&out, ihc.h, ihc.w);
	reinhard_apply(&r, ihc.px, out.px, n);
	Reinhard after;
	reinhard_estimate(&after, out.px, n);
	maxd = 0;
	for (int k = 0; k < 3; k++) maxd = fmax(maxd, fabs(after.mean[k] - r.mean[k]));
	snprintf(buf, sizeof buf, "stain-3.12 reinhard output has the reference LAB means (maxdiff %.2g)", maxd);
	CHECK(buf, maxd < 1.0);
	image_free(&out);
	image_free(&ihc);
	image_free(&he);
}

/* one degenerate image: every status is a known one, a fallback copies the input,
 * and an estimate that succeeds is finite */
static void degenerate_one(const char *name, const uint8_t *px, long n)
{
	char buf[160];
	uint8_t *out = xmalloc((size_t)n * 3 + 1);
	Macenko m;
	macenko_defaults(&m);
	Macenko e = m;
	int st = macenko_estimate(&e, px, n);
	int finite = 1;
	for (int k = 0; k < 6; k++) finite &= isfinite((&e.he[0][0])[k]);
	finite &= isfinite(e.maxc[0]) && isfinite(e.maxc[1]);
	snprintf(buf, sizeof buf, "stain-4 %s: macenko estimate finite (status: %s)", name, st >= 0 && st < STAIN_COUNT ? stain_status_names[st] : "?");
	CHECK(buf, st >= 0 && st < STAIN_COUNT && finite);
	st = macenko_apply(&m, px, out, n);
	snprintf(buf, sizeof buf, "stain-4 %s: macenko apply passes through on fallback (%s)", name, stain_status_names[st]);
	CHECK(buf, st == STAIN_OK || memcmp(out, px, (size_t)n * 3) == 0);
	Reinhard r = { { 60, 20, -10 }, { 10, 5, 5 } };
	st = reinhard_apply(&r, px, out, n);
	snprintf(buf, sizeof buf, "stain-4 %s: reinhard passes through on fallback (%s)", name, stain_status_names[st]);
	CHECK(buf, st == STAIN_OK || memcmp(out, px, (size_t)n * 3) == 0);
	double tf = tissue_fraction(px, n, TISSUE_OD, 0.15, 240);
	snprintf(buf, sizeof buf, "stain-4 %s: tissue fraction in [0,1]", name);
	CHECK(buf, tf >= 0 && tf <= 1);
	free(out);
}

static void degenerate(void)
{
	long n = 64 * 64;
	uint8_t *px = xmalloc((size_t)n * 3);
	memset(px, 255, (size_t)n * 3);
	degenerate_one("all white", px, n);
	Macenko m;
	macenko_defaults(&m);
	CHECK("stain-4.1 all white: too few tissue pixels", macenko_apply(&m, px, px, n) == STAIN_FEW_PIXELS);
	memset(px, 0, (size_t)n * 3);
	degenerate_one("all black", px, n);
	CHECK("stain-4.2 all black: degenerate (flat)", macenko_apply(&m, px, px, n) == STAIN_DEGENERATE);
	for (long i = 0; i < n; i++) { px[3 * i] = 150; px[3 * i + 1] = 60; px[3 * i + 2] = 140; }
	degenerate_one("one flat colour", px, n);
	uint8_t one[3] = { 120, 40, 130 };
	degenerate_one("1x1 image", one, 1);
	CHECK("stain-4.3 1x1: too few tissue pixels", macenko_apply(&m, one, one, 1) == STAIN_FEW_PIXELS);
	degenerate_one("empty image", one, 0);
	/* pure hematoxylin: OD = h * c with c varying, a little noise or none */
	Rng rng;
	rng_seed(&rng, 3);
	for (int noise = 0; noise < 2; noise++) {
		for (long i = 0; i < n; i++) {
			double c = 0.2 + 1.5 * rng_uniform(&rng);
			for (int k = 0; k < 3; k++) {
				double od = m.he[k][0] * c + (noise ? 0.01 * rng_normal(&rng) : 0);
				double v = 240 * exp(-od);
				px[3 * i + k] = v >= 255 ? 255 : (uint8_t)(v + 0.5);
			}
		}
		degenerate_one(noise ? "pure hematoxylin with noise" : "pure hematoxylin", px, n);
		CHECK(noise ? "stain-4.4 pure hematoxylin with noise: degenerate (one stain)" : "stain-4.4 pure hematoxylin: degenerate (one stain)",
		      macenko_apply(&m, px, px, n) == STAIN_DEGENERATE);
	}
	/* two colours only */
	for (long i = 0; i < n; i++) { px[3 * i] = i % 2 ? 90 : 200; px[3 * i + 1] = i % 2 ? 40 : 120; px[3 * i + 2] = i % 2 ? 140 : 180; }
	degenerate_one("two colours", px, n);
	free(px);
}


static void readers(void)
{
	char err[256];
	char *p = fx("ihc_crop.png");
	FILE *fp = fopen(p, "rb");
	free(p);
	unsigned char *buf = xmalloc(1 << 20);
	size_t len = fread(buf, 1, 1 << 20, fp);
	fclose(fp);
	Image im;
	CHECK("stain-5.1 PNG decodes", image_read_mem(buf, len, IMG_AUTO, &im, err, sizeof err) == 0 && im.h == 128 && im.w == 128);
	image_free(&im);
	/* every truncated prefix (in steps) is an error, never a crash */
	int all = 1, named = 1;
	for (size_t k = 0; k < len; k += k < 64 ? 1 : 61) {
		if (image_read_mem(buf, k, IMG_AUTO, &im, err, sizeof err) == 0) { all = 0; image_free(&im); }
		else if (k >= 8 && k < len - 12 && !strstr(err, "truncated") && !strstr(err, "bad PNG")) named = 0;
	}
	CHECK("stain-5.2 truncated PNG prefixes are errors", all);
	CHECK("stain-5.3 truncated PNG errors say so", named);
	/* flipped bytes inside the data: an error (CRC) or a valid image, never a crash */
	Rng rng;
	rng_seed(&rng, 5);
	int crashes = 0;
	for (int t = 0; t < 200; t++) {
		unsigned char *c = xmalloc(len);
		memcpy(c, buf, len);
		for (int j = 0; j < 4; j++) c[8 + rng_below(&rng, len - 8)] ^= (unsigned char)(1 + rng_below(&rng, 255));
		if (image_read_mem(c, len, IMG_AUTO, &im, err, sizeof err) == 0) image_free(&im);
		free(c);
	}
	CHECK("stain-5.4 corrupted PNGs never crash", crashes == 0);
	unsigned char junk[64];
	for (int i = 0; i < 64; i++) junk[i] = (unsigned char)rng_below(&rng, 256);
	junk[0] = 'x';
	CHECK("stain-5.5 random bytes: not a PNG or JPEG", image_read_mem(junk, 64, IMG_AUTO, &im, err, sizeof err) != 0 && strstr(err, "not a PNG or JPEG"));
	CHECK("stain-5.6 empty input", image_read_mem(junk, 0, IMG_AUTO, &im, err, sizeof err) != 0 && strstr(err, "empty"));
	free(buf);
	p = fx("ihc_crop.jpg");
	fp = fopen(p, "rb");
	free(p);
	buf = xmalloc(1 << 20);
	len = fp ? fread(buf, 1, 1 << 20, fp) : 0;
	if (fp) fclose(fp);
	CHECK("stain-5.7 JPEG decodes", image_read_mem(buf, len, IMG_AUTO, &im, err, sizeof err) == 0 && im.h == 128 && im.w == 128);
	image_free(&im);
	all = 1;
	for (size_t k = 0; k + 2 < len; k += k < 64 ? 1 : 37)
		if (image_read_mem(buf, k, IMG_AUTO, &im, err, sizeof err) == 0) { all = 0; image_free(&im); }
	CHECK("stain-5.8 truncated JPEG prefixes are errors", all);
	for (int t = 0; t < 200; t++) {
		unsigned char *c = xmalloc(len);
		memcpy(c, buf, len);
		for (int j = 0; j < 4; j++) c[3 + rng_below(&rng, len - 3)] ^= (unsigned char)(1 + rng_below(&rng, 255));
		if (image_read_mem(c, len, IMG_AUTO, &im, err, sizeof err) == 0) image_free(&im);
		free(c);
	}
	CHECK("stain-5.9 corrupted JPEGs never crash", 1);
	free(buf);
	CHECK("stain-5.10 a PNG is not sniffed as a stream", !image_sniff_stream((const unsigned char *)"\x89PNG\r\n\x1a\n", 8));
	CHECK("stain-5.11 a stream header is sniffed as a stream", image_sniff_stream((const unsigned char *)"\x86\xa4type", 6));
}

static void stream_round_trip(void)
{
	char path[] = "/tmp/test_stain.XXXXXX";
	int fd = mkstemp(path);
	FILE *fp = fdopen(fd, "wb");
	Header h;
	header_init(&h, "images");
	header_add_class(&h, "benign");
	header_add_class(&h, "malignant");
	header_add_domain(&h, "lung");
	ImgOut o;
	imgout_start(&o, fp, path, &h, 4, 5);
	o.max_bytes = 4 * 5 * 3 * 3;  /* several frames */
	uint8_t px[60];
	for (int i = 0; i < 7; i++) {
		for (int k = 0; k < 60; k++) px[k] = (uint8_t)(i * 60 + k);
		char id[16];
		snprintf(id, sizeof id, "t%d", i);
		imgout_push(&o, id, px, i % 2 ? 1 : (i == 4 ? -1 : 0), 0);
	}
	imgout_finish(&o);
	fclose(fp);
	header_free(&h);
	ImgIn in;
	imgin_open(&in, path);
	ImgBlock b;
	memset(&b, 0, sizeof b);
	int seen = 0, ok = in.th == 4 && in.tw == 5 && in.h.nclass == 2 && strcmp(in.h.classes[1], "malignant") == 0;
	while (imgin_next(&in, &b))
		for (int i = 0; i < b.n; i++, seen++) {
			char id[16];
			snprintf(id, sizeof id, "t%d", seen);
			ok &= strcmp(b.ids[i], id) == 0 && b.y[i] == (seen % 2 ? 1 : (seen == 4 ? -1 : 0));
			for (int k = 0; k < 60; k++) ok &= b.x[(size_t)i * 60 + k] == (uint8_t)(seen * 60 + k);
		}
	CHECK("stain-6.1 image stream round trip (7 images, several frames)", ok && seen == 7 && in.frames == 3);
	imgblock_free(&b);
	imgin_close(&in);
	unlink(path);
}

int main(void)
{
	util_init("test_stain");
	const char *env = getenv("STAIN_FIXTURES");
	if (env) fixture_dir = xstrdup(env);
	else if (access("tests/fixtures/stain/params.txt", R_OK) == 0) fixture_dir = xstrdup("tests/fixtures/stain");
	else {
		char *dir = xstrdup(__FILE__);
		char *slash = strrchr(dir, '/');
		if (slash) *slash = 0; else strcpy(dir, ".");
		fixture_dir = xasprintf("%s/../fixtures/stain", dir);
		free(dir);
	}
	lab_against_skimage();
	helpers();
	against_reference();
	degenerate();
	readers();
	stream_round_trip();
	free(fixture_dir);
	return check_status();
}
