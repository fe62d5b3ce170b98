#!/usr/bin/env bash
# The GPU benchmarks in one run: the UNet benchmark at SD 1.5's widths (64x64 latent, DDIM 50
# steps, against DeepCache and diffusers' PAB) and the DiT benchmarks (Flux- and PixArt-shaped,
# 28 steps, against diffusers' caches and cache-dit), every setting timed by CUDA events. Each
# table goes to OUT as Markdown, with the share of the FLOP ceiling each speedup reaches
# ("of ceiling"; the goal is at least 95%).
#
#   scripts/gpu_benchmarks.sh [--device cuda|cuda:N|cpu] [--dtype float32|float16|bfloat16] [--tiny] [OUT] [-- PYTEST ARGS]
#
# OUT defaults to ./benchmark-tables. --tiny shrinks every model, runs 4 to 6 steps and one timed
# round: a smoke test, which with --device cpu runs anywhere (tests/test_benchmarks_script.py).
# Arguments after -- go to pytest (-k flux_shaped: that benchmark alone).
# Needs the dev extra (pytest-benchmark, diffusers, DeepCache, cache-dit); PYTHON picks the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."

device=cuda dtype=float32 tiny=0 out=benchmark-tables
while [ $# -gt 0 ]; do
  case "$1" in
    --device) device=$2; shift 2 ;;
    --dtype) dtype=$2; shift 2 ;;
    --tiny) tiny=1; shift ;;
    -h | --help) sed -n '2,14p' "$0"; exit 0 ;;
    --) shift; break ;;
    -*) echo "gpu_benchmarks.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) out=$1; shift ;;
  esac
done

if [ "$tiny" = 1 ]; then
  export CACHEKIT_UNET_BENCH_WIDTHS=tiny CACHEKIT_UNET_BENCH_LATENT=8 CACHEKIT_UNET_BENCH_STEPS=4
  export CACHEKIT_UNET_BENCH_ROUNDS=1 CACHEKIT_DIT_BENCH_SIZE=tiny CACHEKIT_DIT_BENCH_STEPS=6 CACHEKIT_DIT_BENCH_ROUNDS=1
else
  export CACHEKIT_UNET_BENCH_WIDTHS=full CACHEKIT_UNET_BENCH_LATENT=64 CACHEKIT_UNET_BENCH_STEPS=50
fi
if [ "${device%%:*}" = cpu ]; then
  export OMP_NUM_THREADS=1 CACHEKIT_UNET_BENCH_CLOCK=cpu  # CPU time of one thread, as on the docs' tables
fi

"${PYTHON:-python}" -m pytest benchmarks/test_unet_speed.py benchmarks/test_dit_peers.py -k "not hook_overhead" \
  --device "$device" --dtype "$dtype" --tables "$out" --benchmark-enable -s -p no:cacheprovider "$@"
echo "gpu_benchmarks.sh: tables in $out/: $(cd "$out" && ls -- *.md | tr '\n' ' ')"
