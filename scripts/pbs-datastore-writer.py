#!/usr/bin/env python3
"""Independent writer of Proxmox Backup Server datastores, for tests and benchmarks.

Written from proxmox-backup 3.2.4 (commit 4940514b) without sharing code with the Swift
library PBSDatastore:
  * pbs-datastore/src/file_formats.rs  magics = sha256(<string>)[0:8], recomputed below
  * pbs-datastore/src/data_blob.rs     blob = magic(8) | crc32 LE(4) | payload; CRC over the
                                       payload; zstd level 1, kept only when shorter
  * pbs-datastore/src/fixed_index.rs   .fidx: 4096-byte header (magic, uuid, ctime i64,
                                       index_csum = sha256(digests), size u64, chunk_size u64),
                                       then 32-byte digests
  * pbs-datastore/src/chunk_store.rs   .chunks/<first 2 digest bytes hex>/<digest hex>
  * pbs-datastore/src/manifest.rs      index.json.blob: blob of pretty JSON (keys sorted)
  * pbs-datastore/src/datastore.rs     namespaces: ns/<a>/ns/<b>/<type>/<id>/<time>/
Chunks are compressed by piping to the `zstd` CLI (level 1, no checksum). Every second
compressed chunk also carries the frame content size, which PBS's own writer omits, because
readers must accept both.

Subcommands (all print JSON on stdout where they report something):
  snapshot --datastore D [--ns a/b] --snapshot vm/100/2024-01-01T00:00:00Z
           --archive drive-scsi0.img.fidx=IMAGE [--archive ...] [--chunk-size N]
           [--compress auto|none] [--no-manifest]
      Writes the chunks, the indexes, a qemu-server.conf.blob and the manifest; prints
      {"archives": {name: {"size", "chunk_size", "csum", "digests", "kinds"}}}.
  tamper-chunk --datastore D --digest HEX --how bad-crc|bad-digest|missing|encrypted|truncated
  tamper-index --datastore D [--ns] --snapshot S --archive NAME --how digest-no-csum|truncate
  edit-manifest --datastore D [--ns] --snapshot S --archive NAME [--csum HEX] [--size N]
"""
import argparse
import calendar
import hashlib
import json
import os
import struct
import subprocess
import sys
import time
import uuid
import zlib


def magic(text):
    return hashlib.sha256(text.encode()).digest()[:8]


UNCOMPRESSED = magic("Proxmox Backup uncompressed blob v1.0")
COMPRESSED = magic("Proxmox Backup zstd compressed blob v1.0")
ENCRYPTED = magic("Proxmox Backup encrypted blob v1.0")
FIDX = magic("Proxmox Backup fixed sized chunk index v1.0")
assert UNCOMPRESSED == bytes([66, 171, 56, 7, 190, 131, 112, 161])
assert FIDX == bytes([47, 127, 65, 237, 145, 253, 15, 205])


def blob(payload, kind):
    return kind + struct.pack("<I", zlib.crc32(payload) & 0xFFFFFFFF) + payload


def zstd(data, with_size):
    cmd = ["zstd", "-1", "-q", "-c", "--no-check"]
    if with_size:
        cmd += ["--check", f"--stream-size={len(data)}"]
    return subprocess.run(cmd, input=data, stdout=subprocess.PIPE, check=True).stdout


def encode(data, compress, variant):
    """DataBlob::encode without encryption: zstd only if the blob gets smaller."""
    if compress:
        packed = zstd(data, with_size=variant % 2 == 1)
        if len(packed) < len(data):
            return blob(packed, COMPRESSED), "zstd"
    return blob(data, UNCOMPRESSED), "plain"


def chunk_path(store, digest_hex):
    return os.path.join(store, ".chunks", digest_hex[:4], digest_hex)


def ns_path(store, ns):
    parts = [p for p in ns.split("/") if p] if ns else []
    path = store
    for p in parts:
        path = os.path.join(path, "ns", p)
    return path


def snapshot_dir(store, ns, snap):
    return os.path.join(ns_path(store, ns), *snap.split("/"))


def write_file(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def write_archive(store, image, chunk_size, compress, counter):
    size = os.path.getsize(image)
    digests, kinds = [], []
    with open(image, "rb") as f:
        while True:
            data = f.read(chunk_size)
            if not data:
                break
            digest = hashlib.sha256(data).hexdigest()
            path = chunk_path(store, digest)
            if os.path.exists(path):
                with open(path, "rb") as c:
                    kinds.append("zstd" if c.read(8) == COMPRESSED else "plain")
            else:
                raw, kind = encode(data, compress, counter[0])
                counter[0] += 1
                write_file(path, raw)
                kinds.append(kind)
            digests.append(digest)
    digest_bytes = b"".join(bytes.fromhex(d) for d in digests)
    csum = hashlib.sha256(digest_bytes).digest()
    header = FIDX + uuid.uuid4().bytes + struct.pack("<q", int(time.time())) + csum
    header += struct.pack("<QQ", size, chunk_size)
    header += bytes(4096 - len(header))
    assert len(header) == 4096
    return header + digest_bytes, {"size": size, "chunk_size": chunk_size, "csum": csum.hex(),
                                   "digests": digests, "kinds": kinds}


def manifest_blob(snap, files):
    btype, bid, btime = snap.split("/")
    epoch = calendar.timegm(time.strptime(btime, "%Y-%m-%dT%H:%M:%SZ"))
    doc = {"backup-type": btype, "backup-id": bid, "backup-time": epoch, "files": files,
           "signature": None, "unprotected": {"chunk_upload_stats": {}}}
    text = json.dumps(doc, indent=2, sort_keys=True).encode()
    return encode(text, True, 0)[0]


def cmd_snapshot(a):
    store = a.datastore
    os.makedirs(os.path.join(store, ".chunks"), exist_ok=True)
    open(os.path.join(store, ".lock"), "a").close()
    sdir = snapshot_dir(store, a.ns, a.snapshot)
    os.makedirs(sdir, exist_ok=True)
    group = os.path.dirname(sdir)
    write_file(os.path.join(group, "owner"), b"root@pam\n")
    conf = blob(b"memory: 2048\nscsi0: local-lvm:vm-100-disk-0,size=1G\n", UNCOMPRESSED)
    write_file(os.path.join(sdir, "qemu-server.conf.blob"), conf)
    files = [{"filename": "qemu-server.conf.blob", "crypt-mode": "none", "size": len(conf),
              "csum": hashlib.sha256(conf).hexdigest()}]
    report, counter = {}, [0]
    for spec in a.archive:
        name, image = spec.split("=", 1)
        index, info = write_archive(store, image, a.chunk_size, a.compress == "auto", counter)
        write_file(os.path.join(sdir, name), index)
        files.append({"filename": name, "crypt-mode": "none", "size": info["size"], "csum": info["csum"]})
        report[name] = info
    if not a.no_manifest:
        write_file(os.path.join(sdir, "index.json.blob"), manifest_blob(a.snapshot, files))
    json.dump({"archives": report, "directory": sdir}, sys.stdout)


def cmd_tamper_chunk(a):
    path = chunk_path(a.datastore, a.digest)
    raw = open(path, "rb").read()
    head, payload = raw[:12], raw[12:]
    if a.how == "missing":
        os.remove(path)
        return
    if a.how == "bad-crc":
        payload = bytes([payload[0] ^ 0xFF]) + payload[1:]
        raw = head + payload  # CRC left as it was
    elif a.how == "bad-digest":
        kind = raw[:8]
        plain = b"not the data this digest names" * 10
        raw = blob(zstd(plain, False), COMPRESSED) if kind == COMPRESSED else blob(plain, UNCOMPRESSED)
    elif a.how == "encrypted":
        body = os.urandom(16) + os.urandom(16) + payload  # IV, tag, "ciphertext"
        raw = ENCRYPTED + struct.pack("<I", zlib.crc32(payload) & 0xFFFFFFFF) + body
    elif a.how == "truncated":
        raw = raw[:12 + len(payload) // 2]
        raw = raw[:8] + struct.pack("<I", zlib.crc32(raw[12:]) & 0xFFFFFFFF) + raw[12:]
    write_file(path, raw)


def cmd_tamper_index(a):
    path = os.path.join(snapshot_dir(a.datastore, a.ns, a.snapshot), a.archive)
    raw = bytearray(open(path, "rb").read())
    if a.how == "digest-no-csum":
        raw[4096] ^= 0x01  # the first digest changes, the header's index_csum does not
    elif a.how == "truncate":
        raw = raw[:-16]
    write_file(path, bytes(raw))


def cmd_edit_manifest(a):
    path = os.path.join(snapshot_dir(a.datastore, a.ns, a.snapshot), "index.json.blob")
    raw = open(path, "rb").read()
    payload = raw[12:]
    if raw[:8] == COMPRESSED:
        payload = subprocess.run(["zstd", "-d", "-q", "-c"], input=payload, stdout=subprocess.PIPE, check=True).stdout
    doc = json.loads(payload)
    for f in doc["files"]:
        if f["filename"] == a.archive:
            if a.csum is not None:
                f["csum"] = a.csum
            if a.size is not None:
                f["size"] = a.size
            if a.crypt_mode is not None:
                f["crypt-mode"] = a.crypt_mode
    text = json.dumps(doc, indent=2, sort_keys=True).encode()
    write_file(path, encode(text, True, 0)[0])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("snapshot")
    s.add_argument("--datastore", required=True)
    s.add_argument("--ns", default="")
    s.add_argument("--snapshot", required=True)
    s.add_argument("--archive", action="append", required=True, help="NAME=IMAGE")
    s.add_argument("--chunk-size", type=int, default=4 << 20)
    s.add_argument("--compress", choices=["auto", "none"], default="auto")
    s.add_argument("--no-manifest", action="store_true")
    t = sub.add_parser("tamper-chunk")
    t.add_argument("--datastore", required=True)
    t.add_argument("--digest", required=True)
    t.add_argument("--how", required=True, choices=["bad-crc", "bad-digest", "missing", "encrypted", "truncated"])
    for name in ("tamper-index", "edit-manifest"):
        e = sub.add_parser(name)
        e.add_argument("--datastore", required=True)
        e.add_argument("--ns", default="")
        e.add_argument("--snapshot", required=True)
        e.add_argument("--archive", required=True)
        if name == "tamper-index":
            e.add_argument("--how", required=True, choices=["digest-no-csum", "truncate"])
        else:
            e.add_argument("--csum")
            e.add_argument("--size", type=int)
            e.add_argument("--crypt-mode")
    a = p.parse_args()
    if a.cmd == "snapshot" and (a.chunk_size <= 0 or a.chunk_size & (a.chunk_size - 1)):
        p.error("--chunk-size must be a power of two")
    {"snapshot": cmd_snapshot, "tamper-chunk": cmd_tamper_chunk, "tamper-index": cmd_tamper_index,
     "edit-manifest": cmd_edit_manifest}[a.cmd](a)


if __name__ == "__main__":
    main()
