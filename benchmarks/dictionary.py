"""Benchmark: building the default patch dictionary (Brutzkus et al. 2022) on Fashion-MNIST.

Prints one table measured side by side in this run: the stages of the dictionary build (load,
normalise, streamed moments over all training patches, sampling, whitening, k-means), faiss
against scikit-learn k-means at the same number of Lloyd iterations (time and inertia ratios),
and the whole build end to end.

    .venv/bin/python benchmarks/dictionary.py [--n-patches 262144] [--n-centroids 1024] [--iters 20]
"""

import argparse
import os
import platform
import time

import torch

from patchnb import cluster, data, patches


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-patches", type=int, default=262144)
    p.add_argument("--n-centroids", type=int, default=1024)
    p.add_argument("--patch-size", type=int, default=5)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--no-original-sklearn", dest="original_sklearn", action="store_false",
                   help="skip sklearn with the original code's default settings (slow)")
    args = p.parse_args()
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    rows = []

    def build():
        splits, t = timed(lambda: data.load_splits(args.dataset))
        rows.append(("load dataset (idx gz -> uint8)", t))
        x, t = timed(lambda: splits.norm(splits.train.images))
        rows.append(("normalise train split", t))
        (mean, cov), t = timed(lambda: patches.patch_moments(x, args.patch_size))
        rows.append((f"moments over all {len(x)}x{(x.shape[2] - args.patch_size + 1) ** 2} patches", t))
        pts, t = timed(lambda: patches.dictionary_patches(x, args.n_patches, args.patch_size))
        rows.append((f"sample {args.n_patches} patches, drop low norms", t))
        w, t = timed(lambda: patches.Whitening.from_covariance(mean, cov, "pca")(pts))
        rows.append(("PCA whitening (eigh + matmul)", t))
        km = cluster.kmeans(w, args.n_centroids, n_iter=args.iters, backend="faiss")
        rows.append((f"k-means faiss, N={args.n_centroids}, {args.iters} iterations", km.seconds))
        return w, km

    (w, km_faiss), total = timed(build)
    km_sk = cluster.kmeans(w, args.n_centroids, n_iter=args.iters, backend="sklearn")
    rows.append(("k-means sklearn, same data, init and iterations", km_sk.seconds))
    if args.original_sklearn:  # the original code's call: KMeans(n_clusters=k) with sklearn's defaults
        from sklearn.cluster import KMeans

        sk_default, t_default = timed(lambda: KMeans(args.n_centroids, random_state=0).fit(w.numpy()))
        rows.append(("sklearn KMeans(n_clusters=N) defaults (k-means++, <=300 it.)", t_default))
    width = max(len(r[0]) for r in rows) + 2
    print(f"\n{'stage':{width}s} {'seconds':>9s}")
    for name, t in rows:
        print(f"{name:{width}s} {t:9.2f}")
    print(f"{'whole dictionary build (faiss)':{width}s} {total:9.2f}   target < 15 s")
    print(f"\n{'k-means':{width}s} {'seconds':>9s} {'inertia':>12s}")
    for km in (km_faiss, km_sk):
        print(f"{km.backend:{width}s} {km.seconds:9.2f} {km.inertia:12.5g}")
    print(f"{'ratio sklearn/faiss time (target >= 10)':{width}s} {km_sk.seconds / km_faiss.seconds:9.1f}")
    if args.original_sklearn:
        print(f"{'ratio sklearn-defaults/faiss time (original code)':{width}s} {t_default / km_faiss.seconds:9.1f}"
              f"   ({sk_default.n_iter_} iterations, inertia {sk_default.inertia_:.5g})")
    print(f"{'ratio faiss/sklearn inertia (<= 1: faiss no worse)':{width}s} {km_faiss.inertia / km_sk.inertia:9.4f}")


if __name__ == "__main__":
    main()
