/*
 * libzstd for PBSDatastore: decompressing zstd-compressed PBS blobs (chunks, manifests).
 * Only the streaming decompression API is used (ZSTD_createDStream, ZSTD_decompressStream),
 * because PBS writes frames without a content size (zstd::stream::copy_encode in
 * pbs-datastore/src/data_blob.rs). Nothing else lives here.
 */
#ifndef PBS_STANDBY_ZSTD_SHIM_H
#define PBS_STANDBY_ZSTD_SHIM_H

#include <stddef.h>
#include <zstd.h>
#include <zstd_errors.h>

#endif
