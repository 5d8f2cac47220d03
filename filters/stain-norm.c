/* stain-norm: H&E stain normalisation of PNG/JPEG tiles or image streams.
 *
 * Fit:   stain-norm --fit REF.png [REF2.png ...] --fit-out PARAMS.mpk
 *        estimates, from the pixels of all reference images pooled, the Macenko stain
 *        matrix and 99th-percentile concentrations and the Reinhard CIELAB means and
 *        standard deviations, and writes them (atomically) to a parameters file.
 * Apply: stain-norm [--method macenko|reinhard|none] [--params PARAMS.mpk]
 *        (--out-dir DIR | --to-stream) FILE...
 *        normalises each image (or each tile with --tile) from its own stain estimate to
 *        the reference (the parameters file, or for Macenko without --params the usual
 *        reference matrix); writes PNGs DIR/ID.png atomically, or an image stream.
 *
 * Inputs: PNG or JPEG files (recognised by their first bytes), or image streams
 * (--format stream, or a file that starts like one; stdin "-" or no file is a stream).
 * With --label-from-dir the arguments are folders, searched for .png/.jpg/.jpeg files:
 * the class is the file's folder name, the domain the part of it before the first '_'
 * (lung_aca/ -> domain lung, class aca) unless --domain is given (then the class is the
 * whole folder name); a folder name without '_' takes the domain from the folder above.
 *
 * Frames written with --to-stream (docs/STAIN.md):
 *   {type:"header", version:1, kind:"images", features:[], classes, domains,
 *    tile:{h,w}, stain_norm:{method, ...parameters}, + keys of an input stream's header}
 *   {type:"images", ids[], x u8 (N,H,W,3), y i32 (N), d i32 (N)} ...
 *   {type:"end", rows, frames}
 * Frames read: the same (an input stream); a parameters file is a header of kind
 * "stain" (keys macenko, reinhard, fitted_from, pixels) and an end frame.
 *
 * Background: a tile (or image) whose tissue fraction is below --min-tissue is kept
 * unchanged or dropped (--background); an image Macenko or Reinhard cannot handle (too
 * few tissue pixels, one stain, a flat colour) passes through unchanged. Both are
 * counted in the closing message. Nothing ever becomes NaN.
 *
 * Options: see usage() (every option with its default).
 * Exit: 0 ok, 1 bad input data or I/O error, 2 usage error. */
#include "image.h"
#include "stain.h"
#include "stream.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { M_MACENKO, M_REINHARD, M_NONE };
static const char *method_names[] = { "macenko", "reinhard", "none" };

static struct {
	int method, format, to_stream, label_from_dir, drop_background, tissue, progress, quiet;
	const char *params, *fit_out, *out_dir, *domain, *class_map;
	long tile, stride;
	double io, alpha, beta, min_tissue, lightness;
	int io_given, alpha_given, beta_given, min_tissue_given;
	char **fit;
	int nfit;
} opt = {
	.method = M_MACENKO, .format = -1, .io = 240, .alpha = 1, .beta = 0.15,
	.min_tissue = 0.5, .lightness = 0.8, .tissue = TISSUE_OD,
};
enum { F_AUTO = -1, F_PNG = IMG_PNG, F_JPEG = IMG_JPEG, F_STREAM = 100 };

static void usage(FILE *fp)
{
	fprintf(fp,
	"Usage: stain-norm --fit REF... --fit-out PARAMS [OPTIONS]\n"
	"       stain-norm [OPTIONS] (--out-dir DIR | --to-stream) [FILE...]\n"
	"       stain-norm [OPTIONS] --to-stream --label-from-dir DIR...\n"
	"H&E stain normalisation (Macenko, Reinhard) of PNG/JPEG tiles or image streams.\n"
	"\n"
	"Method and parameters:\n"
	"  -m, --method NAME      macenko, reinhard or none (tiling and conversion only)\n"
	"                         (default: macenko)\n"
	"  -p, --params FILE      apply the reference fitted by --fit-out (default: for Macenko\n"
	"                         the usual reference matrix HE = [[0.5626,0.2159],[0.7201,0.8012],\n"
	"                         [0.4062,0.5581]], maxC = [1.9705,1.0308]; Reinhard needs it)\n"
	"      --fit FILE         a reference image (repeatable; with --fit-out the FILE\n"
	"                         arguments are reference images too)\n"
	"      --fit-out FILE     fit Macenko and Reinhard to the reference images, pooled, and\n"
	"                         write the parameters file (atomically); nothing else is written\n"
	"      --io X             Macenko: transmitted light intensity (default: 240)\n"
	"      --alpha X          Macenko: angle percentile, uses X and 100-X (default: 1)\n"
	"      --beta X           Macenko: OD threshold of the pixels that define the stain\n"
	"                         vectors, and of the tissue mask (default: 0.15)\n"
	"\n"
	"Input:\n"
	"  -f, --format NAME      auto, png, jpeg or stream (default: auto: by the first bytes of\n"
	"                         each file; stdin and no FILE mean an image stream)\n"
	"      --label-from-dir   the arguments are folders; class = the folder of each image,\n"
	"                         domain = its prefix before '_' (needs --to-stream)\n"
	"      --class-map LIST   rename classes, e.g. aca=malignant,n=benign (default: none)\n"
	"      --domain NAME      domain of every image (default: from the folder with\n"
	"                         --label-from-dir, else \"images\"; kept from an input stream)\n"
	"\n"
	"Tiles and background:\n"
	"      --tile N           cut each image into NxN tiles (default: whole images)\n"
	"      --stride N         step between tiles (default: the tile size)\n"
	"      --min-tissue F     tiles with a smaller tissue fraction are background\n"
	"                         (default: 0.5 with --tile, 0 for whole images)\n"
	"      --tissue NAME      od (a pixel is tissue when its OD > beta in any channel) or\n"
	"                         lightness (when L*/100 < --lightness) (default: od)\n"
	"      --lightness F      lightness threshold of --tissue lightness (default: 0.8)\n"
	"      --background NAME  keep (unchanged) or drop background tiles (default: keep)\n"
	"\n"
	"Output:\n"
	"  -o, --out-dir DIR      write DIR/ID.png (ID = the file's base name, _Y_X appended\n"
	"                         for tiles; '/' in stream ids becomes '_'), each atomically\n"
	"      --to-stream        write an image stream on stdout\n"
	"      --progress         progress on stderr even when it is not a terminal\n"
	"  -q, --quiet            no progress, no closing summary\n"
	"  -h, --help             this help\n"
	"\n"
	"Exit status: 0 ok, 1 bad input or I/O error, 2 usage error.\n");
}

/* ---- parameters file ---- */

typedef struct {
	Macenko mac;
	Reinhard rein;
	int has_rein;
} Params;

static void write_params(const char *path, const Params *p, char *const *names, int nnames, long pixels)
{
	AtomicFile af;
	FILE *fp = atomic_open(&af, path);
	SWriter w;
	sw_init(&w, fp, path);
	sw_map(&w, 10);
	sw_key(&w, "type"); sw_str(&w, "header");
	sw_key(&w, "version"); sw_int(&w, STREAM_VERSION);
	sw_key(&w, "kind"); sw_str(&w, "stain");
	sw_key(&w, "features"); sw_array(&w, 0);
	sw_key(&w, "classes"); sw_array(&w, 0);
	sw_key(&w, "domains"); sw_array(&w, 0);
	int64_t sh32[2] = { 3, 2 }, sh2[1] = { 2 }, sh3[1] = { 3 };
	sw_key(&w, "macenko"); sw_map(&w, 5);
	sw_key(&w, "io"); sw_double(&w, p->mac.io);
	sw_key(&w, "alpha"); sw_double(&w, p->mac.alpha);
	sw_key(&w, "beta"); sw_double(&w, p->mac.beta);
	sw_key(&w, "he"); sw_tensor(&w, DT_F64, 2, sh32, p->mac.he);
	sw_key(&w, "maxc"); sw_tensor(&w, DT_F64, 1, sh2, p->mac.maxc);
	sw_key(&w, "reinhard"); sw_map(&w, 3);
	sw_key(&w, "space"); sw_str(&w, "cielab-d65");
	sw_key(&w, "mean"); sw_tensor(&w, DT_F64, 1, sh3, p->rein.mean);
	sw_key(&w, "std"); sw_tensor(&w, DT_F64, 1, sh3, p->rein.std);
	sw_key(&w, "fitted_from"); sw_strs(&w, names, nnames);
	sw_key(&w, "pixels"); sw_int(&w, pixels);
	w.frames++;
	sw_end(&w, 0, 0);
	sw_flush(&w);
	atomic_commit(&af);
}

static void read_f64(const SReader *r, const msgpack_object *m, const char *key, int n0, int n1, double *out)
{
	Tensor t;
	get_tensor(r, m, key, DT_F64, n1 ? 2 : 1, &t);
	if (t.shape[0] != n0 || (n1 && t.shape[1] != n1))
		sr_fail(r, "%s: shape (%lld%s), expected (%d%s)", key, (long long)t.shape[0], n1 ? ",..." : "", n0, n1 ? ",2" : "");
	memcpy(out, t.data, t.nbytes);
	tensor_free(&t);
	for (int i = 0; i < n0 * (n1 ? n1 : 1); i++)
		if (!isfinite(out[i])) sr_fail(r, "%s: a value is not finite", key);
}

static void read_params(const char *path, Params *p)
{
	SReader r;
	sr_open(&r, path);
	const msgpack_object *f = sr_next(&r);
	if (!f) sr_fail(&r, "empty file (no header frame)");
	Header h;
	header_parse(&r, f, &h);
	if (strcmp(h.kind, "stain") != 0) sr_fail(&r, "header kind is \"%s\", expected \"stain\" (a file written by stain-norm --fit-out)", h.kind);
	header_free(&h);
	const msgpack_object *m = obj_get(f, "macenko");
	if (!m || m->type != MSGPACK_OBJECT_MAP) sr_fail(&r, "no \"macenko\" map");
	p->mac.io = get_num(&r, m, "io");
	p->mac.alpha = get_num(&r, m, "alpha");
	p->mac.beta = get_num(&r, m, "beta");
	if (!(p->mac.io >= 1 && p->mac.io <= 255)) sr_fail(&r, "macenko io %g is outside [1, 255]", p->mac.io);
	if (!(p->mac.alpha >= 0 && p->mac.alpha < 50)) sr_fail(&r, "macenko alpha %g is outside [0, 50)", p->mac.alpha);
	if (!(p->mac.beta >= 0 && p->mac.beta <= 5)) sr_fail(&r, "macenko beta %g is outside [0, 5]", p->mac.beta);
	read_f64(&r, m, "he", 3, 2, &p->mac.he[0][0]);
	read_f64(&r, m, "maxc", 2, 0, p->mac.maxc);
	if (!(p->mac.maxc[0] > 0 && p->mac.maxc[1] > 0)) sr_fail(&r, "macenko maxc must be positive");
	p->has_rein = 0;
	const msgpack_object *rm = obj_get(f, "reinhard");
	if (rm) {
		if (rm->type != MSGPACK_OBJECT_MAP) sr_fail(&r, "\"reinhard\" is not a map");
		char *space = get_str(&r, rm, "space");
		if (strcmp(space, "cielab-d65") != 0) sr_fail(&r, "reinhard colour space \"%s\" is not supported (cielab-d65)", space);
		free(space);
		read_f64(&r, rm, "mean", 3, 0, p->rein.mean);
		read_f64(&r, rm, "std", 3, 0, p->rein.std);
		for (int k = 0; k < 3; k++)
			if (p->rein.std[k] < 0) sr_fail(&r, "reinhard std is negative");
		p->has_rein = 1;
	}
	f = sr_next(&r);
	if (!f) { r.frame++; sr_fail(&r, "file ends without an end frame (was it written completely?)"); }
	if (strcmp(frame_type(&r, f), "end") != 0) sr_fail(&r, "expected the end frame");
	sr_close(&r);
}

/* ---- inputs ---- */

typedef struct {
	char *path;
	char *id;
	int cls, dom;     /* indices in the output header; -1 = unlabelled */
	int stream;       /* an image stream */
} Input;

static int is_image_name(const char *s)
{
	const char *dot = strrchr(s, '.');
	return dot && (str_ieq(dot, ".png") || str_ieq(dot, ".jpg") || str_ieq(dot, ".jpeg"));
}

static char *base_noext(const char *path)
{
	const char *s = strrchr(path, '/');
	char *b = xstrdup(s ? s + 1 : path);
	char *dot = strrchr(b, '.');
	if (dot && dot != b) *dot = 0;
	return b;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void walk(const char *dir, int depth, char ***files, int *n)
{
	if (depth > 8) return;
	DIR *d = opendir(dir);
	if (!d) die("%s: cannot open folder:", dir);
	char **names = NULL;
	int nn = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.') continue;
		names = xrealloc(names, sizeof *names * (size_t)(nn + 1));
		names[nn++] = xstrdup(e->d_name);
	}
	closedir(d);
	qsort(names, (size_t)nn, sizeof *names, cmp_str);
	for (int i = 0; i < nn; i++) {
		char *p = xasprintf("%s/%s", dir, names[i]);
		struct stat st;
		if (stat(p, &st) != 0) die("%s:", p);
		if (S_ISDIR(st.st_mode)) {
			walk(p, depth + 1, files, n);
			free(p);
		} else if (S_ISREG(st.st_mode) && is_image_name(names[i])) {
			*files = xrealloc(*files, sizeof **files * (size_t)(*n + 1));
			(*files)[(*n)++] = p;
		} else {
			free(p);
		}
		free(names[i]);
	}
	free(names);
}

/* name of the folder holding path, and of the one above it ("" if none) */
static void parent_names(const char *path, char **parent, char **grand)
{
	char *p = xstrdup(path);
	char *s = strrchr(p, '/');
	*parent = xstrdup("");
	*grand = xstrdup("");
	if (!s) { free(p); return; }
	*s = 0;
	s = strrchr(p, '/');
	free(*parent);
	*parent = xstrdup(s ? s + 1 : p);
	if (s) {
		*s = 0;
		char *g = strrchr(p, '/');
		free(*grand);
		*grand = xstrdup(g ? g + 1 : p);
	}
	free(p);
}

static const char *map_class(const char *c)
{
	static char buf[256];
	if (!opt.class_map) return c;
	const char *s = opt.class_map;
	size_t lc = strlen(c);
	while (*s) {
		const char *eq = strchr(s, '='), *end = strchr(s, ',');
		if (!end) end = s + strlen(s);
		if ((size_t)(eq - s) == lc && strncmp(s, c, lc) == 0) {
			size_t n = (size_t)(end - eq - 1);
			if (n >= sizeof buf) n = sizeof buf - 1;
			memcpy(buf, eq + 1, n);
			buf[n] = 0;
			return buf;
		}
		s = *end ? end + 1 : end;
	}
	return c;
}

static void check_class_map(const char *s)
{
	const char *p = s;
	while (*p) {
		const char *end = strchr(p, ',');
		if (!end) end = p + strlen(p);
		const char *eq = memchr(p, '=', (size_t)(end - p));
		if (!eq || eq == p || eq + 1 == end)
			usage_error("--class-map: %s: expected a list of FROM=TO pairs, e.g. aca=malignant,n=benign", s);
		p = *end ? end + 1 : end;
	}
}

static int add_unique(Header *h, int classes, const char *name)
{
	char **list = classes ? h->classes : h->domains;
	int n = classes ? h->nclass : h->ndom;
	for (int i = 0; i < n; i++)
		if (strcmp(list[i], name) == 0) return i;
	return classes ? header_add_class(h, name) : header_add_domain(h, name);
}

static int sniff_stream_file(const char *path)
{
	if (strcmp(path, "-") == 0) return 1;
	FILE *fp = fopen(path, "rb");
	if (!fp) die("%s: cannot open:", path);
	unsigned char b[8];
	size_t n = fread(b, 1, sizeof b, fp);
	fclose(fp);
	return image_sniff_stream(b, n);
}

/* ---- the work ---- */

static struct {
	Params ref;
	Header out_h;
	ImgOut out;
	int out_started;
	long images, units, normalised, background, dropped, fallback[STAIN_COUNT], written;
} S;

static void emit(const Image *im, const char *id, int y, int d)
{
	if (opt.to_stream) {
		if (!S.out_started) {
			imgout_start(&S.out, stdout, "<stdout>", &S.out_h, im->h, im->w);
			S.out_started = 1;
		}
		if (im->h != S.out.th || im->w != S.out.tw)
			die("%s: image is %dx%d, the stream's images are %dx%d (cut equal tiles with --tile)", id, im->w, im->h, S.out.tw, S.out.th);
		imgout_push(&S.out, id, im->px, y, d);
	} else {
		char *name = xstrdup(id);
		for (char *c = name; *c; c++)
			if (*c == '/') *c = '_';
		char *path = xasprintf("%s/%s.png", opt.out_dir, name);
		image_write_png(path, im);
		free(path);
		free(name);
	}
	S.written++;
}

static void process_unit(Image *im, const char *id, int y, int d)
{
	long n = (long)im->h * im->w;
	S.units++;
	if (opt.min_tissue > 0) {
		double thr = opt.tissue == TISSUE_OD ? S.ref.mac.beta : opt.lightness;
		double frac = tissue_fraction(im->px, n, opt.tissue, thr, S.ref.mac.io);
		if (frac < opt.min_tissue) {
			S.background++;
			if (opt.drop_background) { S.dropped++; return; }
			emit(im, id, y, d);
			return;
		}
	}
	int st = STAIN_OK;
	if (opt.method == M_MACENKO) st = macenko_apply(&S.ref.mac, im->px, im->px, n);
	else if (opt.method == M_REINHARD) st = reinhard_apply(&S.ref.rein, im->px, im->px, n);
	if (st == STAIN_OK) S.normalised++;
	else S.fallback[st]++;
	emit(im, id, y, d);
}

static void process_image(Image *im, const char *id, int y, int d)
{
	S.images++;
	progress("%ld images, %ld tiles", S.images, S.units);
	if (!opt.tile) {
		process_unit(im, id, y, d);
		return;
	}
	int t = (int)opt.tile, s = (int)(opt.stride ? opt.stride : opt.tile);
	for (int ty = 0; ty + t <= im->h; ty += s)
		for (int tx = 0; tx + t <= im->w; tx += s) {
			Image tile;
			image_crop(&tile, im, ty, tx, t, t);
			char *tid = xasprintf("%s_%d_%d", id, ty, tx);
			process_unit(&tile, tid, y, d);
			free(tid);
			image_free(&tile);
		}
}

/* a stream input: labels and domains mapped by name into the output header */
static void process_stream(ImgIn *in)
{
	int *cmap = xmallocarray((size_t)in->h.nclass + 1, sizeof *cmap);
	int *dmap = xmallocarray((size_t)in->h.ndom + 1, sizeof *dmap);
	for (int i = 0; i < in->h.nclass; i++) cmap[i] = add_unique(&S.out_h, 1, map_class(in->h.classes[i]));
	for (int i = 0; i < in->h.ndom; i++) dmap[i] = add_unique(&S.out_h, 0, opt.domain ? opt.domain : in->h.domains[i]);
	ImgBlock b;
	memset(&b, 0, sizeof b);
	size_t isz = (size_t)in->th * in->tw * 3;
	while (imgin_next(in, &b)) {
		for (int i = 0; i < b.n; i++) {
			Image im;
			image_alloc(&im, in->th, in->tw);
			memcpy(im.px, b.x + isz * (size_t)i, isz);
			process_image(&im, b.ids[i], b.y[i] < 0 ? -1 : cmap[b.y[i]], dmap[b.d[i]]);
			image_free(&im);
		}
	}
	imgblock_free(&b);
	free(cmap);
	free(dmap);
}

static void set_stain_key(Header *h)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
#define PSTR(s) do { size_t l_ = strlen(s); msgpack_pack_str(&pk, l_); msgpack_pack_str_body(&pk, s, l_); } while (0)
	int nk = 2 + (opt.method == M_MACENKO ? 5 : opt.method == M_REINHARD ? 3 : 0);
	msgpack_pack_map(&pk, (size_t)nk);
	PSTR("method"); PSTR(method_names[opt.method]);
	PSTR("params"); if (opt.params) PSTR(opt.params); else msgpack_pack_nil(&pk);
	if (opt.method == M_MACENKO) {
		PSTR("io"); msgpack_pack_double(&pk, S.ref.mac.io);
		PSTR("alpha"); msgpack_pack_double(&pk, S.ref.mac.alpha);
		PSTR("beta"); msgpack_pack_double(&pk, S.ref.mac.beta);
		PSTR("he"); msgpack_pack_array(&pk, 6);
		for (int k = 0; k < 6; k++) msgpack_pack_double(&pk, (&S.ref.mac.he[0][0])[k]);
		PSTR("maxc"); msgpack_pack_array(&pk, 2);
		for (int k = 0; k < 2; k++) msgpack_pack_double(&pk, S.ref.mac.maxc[k]);
	} else if (opt.method == M_REINHARD) {
		PSTR("space"); PSTR("cielab-d65");
		PSTR("mean"); msgpack_pack_array(&pk, 3);
		for (int k = 0; k < 3; k++) msgpack_pack_double(&pk, S.ref.rein.mean[k]);
		PSTR("std"); msgpack_pack_array(&pk, 3);
		for (int k = 0; k < 3; k++) msgpack_pack_double(&pk, S.ref.rein.std[k]);
	}
#undef PSTR
	Blob b = { sb.data, sb.size };
	header_set(h, "stain_norm", &b);
	msgpack_sbuffer_destroy(&sb);
}

static void read_or_die(const char *path, Image *im)
{
	char err[256];
	int fmt = opt.format == F_PNG ? IMG_PNG : opt.format == F_JPEG ? IMG_JPEG : IMG_AUTO;
	if (image_read(path, fmt, im, err, sizeof err) != 0) die("%s: %s", path, err);
}

static void fit(char **files, int n)
{
	if (n == 0) usage_error("--fit-out: no reference image (give --fit FILE or FILE arguments)");
	uint8_t *px = NULL;
	long np = 0;
	for (int i = 0; i < n; i++) {
		if (opt.format == F_STREAM || (opt.format == F_AUTO && sniff_stream_file(files[i]))) {
			ImgIn in;
			ImgBlock b;
			memset(&b, 0, sizeof b);
			imgin_open(&in, files[i]);
			while (imgin_next(&in, &b)) {
				long add = (long)b.n * b.th * b.tw;
				px = xrealloc(px, (size_t)(np + add) * 3);
				memcpy(px + (size_t)np * 3, b.x, (size_t)add * 3);
				np += add;
			}
			imgblock_free(&b);
			imgin_close(&in);
			continue;
		}
		Image im;
		read_or_die(files[i], &im);
		long add = (long)im.h * im.w;
		px = xrealloc(px, (size_t)(np + add) * 3);
		memcpy(px + (size_t)np * 3, im.px, (size_t)add * 3);
		np += add;
		image_free(&im);
	}
	Params p;
	memset(&p, 0, sizeof p);
	macenko_defaults(&p.mac);
	p.mac.io = opt.io;
	p.mac.alpha = opt.alpha;
	p.mac.beta = opt.beta;
	int st = macenko_estimate(&p.mac, px, np);
	if (st != STAIN_OK)
		die("%s%s: cannot fit Macenko: %s (%ld pixels; at least %d with OD >= %g in every channel are needed)",
		    files[0], n > 1 ? " and the other references" : "", stain_status_names[st], np, STAIN_MIN_PIXELS, opt.beta);
	reinhard_estimate(&p.rein, px, np);
	free(px);
	write_params(opt.fit_out, &p, files, n, np);
	info("fitted %d reference image%s (%ld pixels) into %s: HE = [[%.4f, %.4f], [%.4f, %.4f], [%.4f, %.4f]], maxC = [%.4f, %.4f]",
	     n, n == 1 ? "" : "s", np, opt.fit_out, p.mac.he[0][0], p.mac.he[0][1], p.mac.he[1][0], p.mac.he[1][1],
	     p.mac.he[2][0], p.mac.he[2][1], p.mac.maxc[0], p.mac.maxc[1]);
}

int main(int argc, char **argv)
{
	util_init(argv[0]);
	enum { O_FIT = 256, O_FIT_OUT, O_IO, O_ALPHA, O_BETA, O_LABEL_DIR, O_CLASS_MAP, O_DOMAIN, O_TILE, O_STRIDE,
	       O_MIN_TISSUE, O_TISSUE, O_LIGHTNESS, O_BACKGROUND, O_TO_STREAM, O_PROGRESS };
	static const struct option lo[] = {
		{ "method", required_argument, 0, 'm' }, { "params", required_argument, 0, 'p' },
		{ "fit", required_argument, 0, O_FIT }, { "fit-out", required_argument, 0, O_FIT_OUT },
		{ "io", required_argument, 0, O_IO }, { "alpha", required_argument, 0, O_ALPHA },
		{ "beta", required_argument, 0, O_BETA }, { "format", required_argument, 0, 'f' },
		{ "label-from-dir", no_argument, 0, O_LABEL_DIR }, { "class-map", required_argument, 0, O_CLASS_MAP },
		{ "domain", required_argument, 0, O_DOMAIN }, { "tile", required_argument, 0, O_TILE },
		{ "stride", required_argument, 0, O_STRIDE }, { "min-tissue", required_argument, 0, O_MIN_TISSUE },
		{ "tissue", required_argument, 0, O_TISSUE }, { "lightness", required_argument, 0, O_LIGHTNESS },
		{ "background", required_argument, 0, O_BACKGROUND }, { "out-dir", required_argument, 0, 'o' },
		{ "to-stream", no_argument, 0, O_TO_STREAM }, { "progress", no_argument, 0, O_PROGRESS },
		{ "quiet", no_argument, 0, 'q' }, { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 }
	};
	int c;
	while ((c = getopt_long(argc, argv, "m:p:f:o:qh", lo, NULL)) != -1) {
		switch (c) {
		case 'm':
			if (!strcmp(optarg, "macenko")) opt.method = M_MACENKO;
			else if (!strcmp(optarg, "reinhard")) opt.method = M_REINHARD;
			else if (!strcmp(optarg, "none")) opt.method = M_NONE;
			else if (!strcmp(optarg, "vahadane")) usage_error("--method: vahadane is not implemented (macenko, reinhard, none)");
			else usage_error("--method: %s: expected macenko, reinhard or none", optarg);
			break;
		case 'p': opt.params = optarg; break;
		case O_FIT:
			opt.fit = xrealloc(opt.fit, sizeof *opt.fit * (size_t)(opt.nfit + 1));
			opt.fit[opt.nfit++] = optarg;
			break;
		case O_FIT_OUT: opt.fit_out = optarg; break;
		case O_IO: opt.io = parse_double("--io", optarg, 1, 255); opt.io_given = 1; break;
		case O_ALPHA: opt.alpha = parse_double("--alpha", optarg, 0, 49.9); opt.alpha_given = 1; break;
		case O_BETA: opt.beta = parse_double("--beta", optarg, 0, 5); opt.beta_given = 1; break;
		case 'f':
			if (!strcmp(optarg, "auto")) opt.format = F_AUTO;
			else if (!strcmp(optarg, "png")) opt.format = F_PNG;
			else if (!strcmp(optarg, "jpeg") || !strcmp(optarg, "jpg")) opt.format = F_JPEG;
			else if (!strcmp(optarg, "stream")) opt.format = F_STREAM;
			else usage_error("--format: %s: expected auto, png, jpeg or stream", optarg);
			break;
		case O_LABEL_DIR: opt.label_from_dir = 1; break;
		case O_CLASS_MAP: check_class_map(optarg); opt.class_map = optarg; break;
		case O_DOMAIN:
			if (!*optarg) usage_error("--domain: empty name");
			opt.domain = optarg;
			break;
		case O_TILE: opt.tile = parse_long("--tile", optarg, 2, IMAGE_MAX_SIDE); break;
		case O_STRIDE: opt.stride = parse_long("--stride", optarg, 1, IMAGE_MAX_SIDE); break;
		case O_MIN_TISSUE: opt.min_tissue = parse_double("--min-tissue", optarg, 0, 1); opt.min_tissue_given = 1; break;
		case O_TISSUE:
			if (!strcmp(optarg, "od")) opt.tissue = TISSUE_OD;
			else if (!strcmp(optarg, "lightness")) opt.tissue = TISSUE_LIGHTNESS;
			else usage_error("--tissue: %s: expected od or lightness", optarg);
			break;
		case O_LIGHTNESS: opt.lightness = parse_double("--lightness", optarg, 0, 1); break;
		case O_BACKGROUND:
			if (!strcmp(optarg, "keep")) opt.drop_background = 0;
			else if (!strcmp(optarg, "drop")) opt.drop_background = 1;
			else usage_error("--background: %s: expected keep or drop", optarg);
			break;
		case 'o': opt.out_dir = optarg; break;
		case O_TO_STREAM: opt.to_stream = 1; break;
		case O_PROGRESS: opt.progress = 1; break;
		case 'q': opt.quiet = 1; break;
		case 'h': usage(stdout); return 0;
		default: usage_error("unknown option");
		}
	}
	progress_setup(opt.progress, opt.quiet);
	char **files = argv + optind;
	int nfiles = argc - optind;

	if (opt.fit_out || opt.nfit) {
		if (!opt.fit_out) usage_error("--fit: give --fit-out FILE for the parameters");
		if (opt.params) usage_error("--fit-out and --params exclude each other");
		if (opt.out_dir || opt.to_stream) usage_error("--fit-out writes only the parameters file (apply them in a second run)");
		if (opt.label_from_dir || opt.tile) usage_error("--fit-out fits whole reference images (no --label-from-dir or --tile)");
		char **all = xmallocarray((size_t)(opt.nfit + nfiles) + 1, sizeof *all);
		int n = 0;
		for (int i = 0; i < opt.nfit; i++) all[n++] = opt.fit[i];
		for (int i = 0; i < nfiles; i++) all[n++] = files[i];
		fit(all, n);
		free(all);
		free(opt.fit);
		return 0;
	}
	if (!opt.out_dir == !opt.to_stream) usage_error("give exactly one of --out-dir DIR and --to-stream");
	if (opt.to_stream && isatty(1)) usage_error("--to-stream: stdout is a terminal (redirect it to a file or a pipe)");
	if (opt.label_from_dir && !opt.to_stream) usage_error("--label-from-dir needs --to-stream");
	if (opt.label_from_dir && nfiles == 0) usage_error("--label-from-dir: give one or more folders");
	if (opt.label_from_dir && opt.format == F_STREAM) usage_error("--label-from-dir reads image files, not streams");
	if (opt.stride && !opt.tile) usage_error("--stride needs --tile");
	if (!opt.tile && !opt.min_tissue_given) opt.min_tissue = 0;
	if (opt.params && (opt.io_given || opt.alpha_given || opt.beta_given))
		usage_error("--io, --alpha and --beta are stored in the parameters file; set them when fitting");
	if (opt.method == M_REINHARD && !opt.params) usage_error("--method reinhard needs --params FILE (fit one with --fit-out)");

	memset(&S, 0, sizeof S);
	macenko_defaults(&S.ref.mac);
	S.ref.mac.io = opt.io;
	S.ref.mac.alpha = opt.alpha;
	S.ref.mac.beta = opt.beta;
	if (opt.params) {
		read_params(opt.params, &S.ref);
		if (opt.method == M_REINHARD && !S.ref.has_rein) die("%s: no Reinhard statistics in the parameters file", opt.params);
	}
	if (opt.out_dir && mkdir(opt.out_dir, 0777) != 0 && errno != EEXIST) die("%s: cannot create folder:", opt.out_dir);

	header_init(&S.out_h, "images");
	/* inputs */
	Input *in = NULL;
	int nin = 0;
	static char *stdin_arg[] = { "-" };
	if (opt.label_from_dir) {
		char **found = NULL;
		int nf = 0;
		for (int i = 0; i < nfiles; i++) {
			struct stat st;
			if (stat(files[i], &st) != 0) die("%s:", files[i]);
			if (!S_ISDIR(st.st_mode)) die("%s: not a folder (--label-from-dir takes folders)", files[i]);
			walk(files[i], 0, &found, &nf);
		}
		if (nf == 0) die("%s: no .png, .jpg or .jpeg files found", files[0]);
		/* sorted class and domain lists, then the inputs */
		char **cls = xmallocarray((size_t)nf, sizeof *cls), **dom = xmallocarray((size_t)nf, sizeof *dom);
		for (int i = 0; i < nf; i++) {
			char *parent, *grand;
			parent_names(found[i], &parent, &grand);
			char *us = strchr(parent, '_');
			if (opt.domain) {
				dom[i] = xstrdup(opt.domain);
				cls[i] = xstrdup(map_class(parent));
			} else if (us && us != parent && us[1]) {
				*us = 0;
				dom[i] = xstrdup(parent);
				*us = '_';
				cls[i] = xstrdup(map_class(us + 1));
			} else {
				dom[i] = xstrdup(*grand ? grand : "images");
				cls[i] = xstrdup(map_class(parent));
			}
			free(grand);
			in = xrealloc(in, sizeof *in * (size_t)(nin + 1));
			char *b = base_noext(found[i]);
			in[nin].path = found[i];
			in[nin].id = xasprintf("%s/%s", parent, b);
			in[nin].stream = 0;
			nin++;
			free(b);
			free(parent);
		}
		char **sc = xmallocarray((size_t)nf, sizeof *sc), **sd = xmallocarray((size_t)nf, sizeof *sd);
		memcpy(sc, cls, sizeof *sc * (size_t)nf);
		memcpy(sd, dom, sizeof *sd * (size_t)nf);
		qsort(sc, (size_t)nf, sizeof *sc, cmp_str);
		qsort(sd, (size_t)nf, sizeof *sd, cmp_str);
		for (int i = 0; i < nf; i++) { add_unique(&S.out_h, 1, sc[i]); add_unique(&S.out_h, 0, sd[i]); }
		for (int i = 0; i < nf; i++) {
			in[i].cls = add_unique(&S.out_h, 1, cls[i]);
			in[i].dom = add_unique(&S.out_h, 0, dom[i]);
			free(cls[i]);
			free(dom[i]);
		}
		free(cls); free(dom); free(sc); free(sd); free(found);
	} else {
		if (nfiles == 0) { files = stdin_arg; nfiles = 1; }
		in = xmallocarray((size_t)nfiles, sizeof *in);
		for (int i = 0; i < nfiles; i++) {
			in[nin].path = xstrdup(files[i]);
			in[nin].stream = opt.format == F_STREAM ||
			                 (opt.format == F_AUTO && sniff_stream_file(files[i]));
			in[nin].id = base_noext(files[i]);
			in[nin].cls = -1;
			in[nin].dom = -1;
			nin++;
		}
	}
	/* streams: open them all first, so the output header knows every class and domain */
	ImgIn *streams = xcalloc((size_t)nin, sizeof *streams);
	int any_file = 0;
	for (int i = 0; i < nin; i++) {
		if (!in[i].stream) { any_file = 1; continue; }
		imgin_open(&streams[i], in[i].path);
		if (i == 0 || !in[0].stream) {
			/* extra keys of the first stream's header are kept */
			for (int k = 0; k < streams[i].h.nextra; k++)
				if (strcmp(streams[i].h.extra_keys[k], "tile") != 0)
					header_set(&S.out_h, streams[i].h.extra_keys[k], &streams[i].h.extra[k]);
		}
		for (int k = 0; k < streams[i].h.nclass; k++) add_unique(&S.out_h, 1, map_class(streams[i].h.classes[k]));
		for (int k = 0; k < streams[i].h.ndom; k++) add_unique(&S.out_h, 0, opt.domain ? opt.domain : streams[i].h.domains[k]);
	}
	int file_dom = -1;
	if (any_file && !opt.label_from_dir) file_dom = add_unique(&S.out_h, 0, opt.domain ? opt.domain : "images");
	set_stain_key(&S.out_h);

	for (int i = 0; i < nin; i++) {
		if (in[i].stream) {
			process_stream(&streams[i]);
			imgin_close(&streams[i]);
		} else {
			Image im;
			read_or_die(in[i].path, &im);
			process_image(&im, in[i].id, in[i].cls, opt.label_from_dir ? in[i].dom : file_dom);
			image_free(&im);
		}
		free(in[i].path);
		free(in[i].id);
	}
	free(streams);
	free(in);
	progress_done();
	if (opt.to_stream) {
		if (!S.out_started) {
			/* nothing to write but a valid, empty stream: the tile size of the request */
			imgout_start(&S.out, stdout, "<stdout>", &S.out_h, opt.tile ? (int)opt.tile : 1, opt.tile ? (int)opt.tile : 1);
		}
		imgout_finish(&S.out);
	}
	long fb = S.fallback[STAIN_FEW_PIXELS] + S.fallback[STAIN_DEGENERATE];
	info("%ld image%s, %ld tile%s: %ld normalised (%s), %ld background (tissue < %g, %s), "
	     "%ld passed through unchanged (too few tissue pixels: %ld, degenerate stains: %ld); %ld written",
	     S.images, S.images == 1 ? "" : "s", S.units, S.units == 1 ? "" : "s", S.normalised, method_names[opt.method],
	     S.background, opt.min_tissue, opt.drop_background ? "dropped" : "kept unchanged",
	     fb, S.fallback[STAIN_FEW_PIXELS], S.fallback[STAIN_DEGENERATE], S.written);
	header_free(&S.out_h);
	return 0;
}
