/* chunk.h: the two helpers of chunked preprocessing (pipelines/preprocess,
 * docs/ARCHS4.md), reached through normalize --concat and normalize --list-samples.
 *
 * chunk_concat: data streams written from chunks of one table (the same features, the
 * same preprocessing) become one data stream on stdout: the first input's header with
 * the class and domain lists of all inputs merged by name in input order, every row in
 * input order re-cut into frames of block_rows rows, one end frame. The inputs must
 * agree on the features and on every header key besides classes and domains (byte for
 * byte: e.g. the same "preprocessing"); a difference is an error naming both files and
 * the key. Memory: one input frame and one output frame. Returns the exit status.
 *
 * chunk_list_h5: the geo_accession of every sample an HDF5 input selects (ids, then
 * every FIELD=VALUE / FIELD~TEXT of where, all of which must hold; as normalize selects
 * them), one per line on stdout in column order, without reading expression values.
 * An id that names two samples is an error (a chunk given by ids could not tell them
 * apart). Returns the exit status. */
#ifndef DAPIPE_CHUNK_H
#define DAPIPE_CHUNK_H

int chunk_concat(char *const *paths, int n, int block_rows);
int chunk_list_h5(const char *path, char *const *ids, long nids, char *const *where, int nwhere);

#endif
