#!/usr/bin/env bash
# One time-boxed training run on a lent GPU machine, as a single self-contained command.
#
# The device tool runs a command in a copy of this checkout and brings back what it writes
# under $OUT; the machine has torch with CUDA but no network and no pip install of this
# project. Prepare the data here first (git-ignored under data/; 64 MiB travel in all, the
# tracked files included):
#
#   python3 training/prepare_gpu_data.py --shards 3 4 --without runtime/models
#
# fills data/gpu/val with the 8 held-out files and data/gpu/train with photos of the chosen
# shards up to the limit (about 330 to 410 with the shipped model folder, 18.6 MiB, moved out
# of the checkout for the run as it prints; about 230 without --without, and the folder
# stays), then run `bash training/gpu_run.sh` with carry ["data/gpu"] and a timeout of 600 s.
# Shards the GPU runs have seen: 0 (vr-1), 1 and 2 (vr-2), 3 and 4 (vr-3), 5 (its last 8
# files are held out and never copied to train/) and 0 (vr-4), 1 and 2 (vr-5); every shard
# has been seen twice but 3, 4 and 5, so 3 and 4 come next.
# Back here: about 30 minutes of work and 40 of waiting (rehearsed on a CPU-made stand-in,
# 2026-12-03, by a review that found the earlier list wrong in places; NEW is the new model's
# id, e.g. nicodec-mshp-vr-6, OLD the shipped one's; FILES_AT is where the run's files came back):
#   1. keep the model being replaced, for its users' files to decode (docs/how-it-works.md;
#      about 7 MB; the folder moved aside by --without runtime/models is it, once moved back):
#        mkdir -p runtime/models/earlier/OLD
#        for f in manifest.json entropy_parameters.onnx decoder.onnx tables.npz; do
#          cp runtime/models/default/$f runtime/models/earlier/OLD/; done
#        rm -rf /tmp/old-model && cp -r runtime/models/default /tmp/old-model  # for step 4
#      (the folders already under earlier/ stay: vr-3d's since vr-4d, vr-4d's since vr-5d, 6.8 MB each; no rule yet
#      says when a release may drop one, which would leave its files to --model DIR)
#   2. the checkpoint, one in the tree (cp before git rm: git removes the folder it empties):
#        cp FILES_AT/slim.pt training/checkpoints/NEW.pt && git rm -q training/checkpoints/OLD.pt
#        cp FILES_AT/train.log training/logs/NEW-run1.txt   (and run 2's; a header line each)
#      INIT's default here is the one checkpoint in training/checkpoints (a test checks it is
#      the shipped model's); the shards seen, above, get this run's.
#   3. export (20 s): nicodec-export training/checkpoints/NEW.pt --out runtime/models/default \
#        --model-id NEW --default-quality 56 --force --replace-shipped-model
#      (without --default-quality the default is 75; no --decodes-files-of: the entropy side
#      changed, so the new model cannot read the old files, and the export says so if asked)
#   4. a smoke check (1 min): nicodec encode /work/shared/data/kodak/kodim23.png -o /tmp/k.nic
#      and nicodec decode /tmp/k.nic -o /tmp/k.png (the bytes, bpp and sha256 for the notes);
#      python benchmarks/models.py /tmp/old-model runtime/models/default --images
#      /work/shared/data/kodak --limit 2 (then without --limit and with --json /tmp/models.json:
#      about 10 minutes), then benchmarks/run_all.py (about 16 to 21), and the collapse of a
#      picture coded again and again (docs/model.md): python benchmarks/generations.py --limit 8
#      --threads 1 --quality 90 --json benchmarks/results/generations_q90.json (6 minutes; vr-5f:
#      37.32 -> 24.08 dB in 20 rounds), and at 56 into generations.json
#   5. tests (10 minutes of editing, 3 of running):
#      - tests/data/made-by-NEW.nic: Codec().encode(synthetic_photo(96, 128, seed=7), quality=56),
#        a new row of test_a_file_of_a_model_this_nicodec_keeps_decodes_to_the_integers_it_was_
#        made_of (test_codec.py; its docstring has the recipe) with its decode_symbols digest;
#        OLD's row (made-by-vr-5f.nic) then names OLD as the earlier model that decodes it, its
#        digest unchanged, and so do made-by-vr-5e.nic's and made-by-vr-5d.nic's (vr-5f reads their
#        files: its decodes_files_of, which the kept copy keeps); the files of the earlier models (made-by-vr-4d.nic: vr-4d's;
#        made-by-vr-3.nic, -7d8ff08-rgba, -335e46f-gray: vr-3d's) keep their tests as they are;
#        .ci/run selects that test by name;
#      - tests/test_gains.py: MODEL_ID and PINNED (ModelFiles.load().gains(check_quality(q))
#        at its qualities, components 0, 100 and 191);
#      - FORMAT.md's paragraph on the shipped model (test_format.py checks it);
#      - tests that met the model's own numbers at vr-4d (they passed unchanged with vr-5d, vr-5e and vr-5f): test_batch's --max-bytes rerun (tied
#        file sizes), test_cli's --refine (the steps needed to beat the default rounding),
#        test_refine's "after != before" from quality 60;
#      - run test_codec, test_gains, test_loading, test_format, test_earlier_models, test_refine,
#        test_training_cli (no new skips), test_exactness, test_integer; then the whole suite.
#   6. docs (15 minutes): git grep OLD and its hash; README (the model, its figures at the
#      quick start, the BD-rate table and speed after run_all), docs/model.md (its entry and
#      "What the model does poorly"), docs/training.md, docs/install.md, docs/cli.md,
#      docs/benchmarks.md (the speed table), benchmarks/rd.py's docstring, a line in
#      training/LOG.md; "files made by vr-1 to vr-2d" stays (OLD's files still decode); and
#      pyproject's version, to the next minor (0.1.0 from vr-1 to vr-3d, 0.2.0 from vr-4d, 0.3.0 from vr-5d, 0.4.0 from vr-5e, 0.5.0 from vr-5f; a new model makes
#      files that older releases refuse, and the version is what a user can name).
# With 15 minutes of device time: run 1 as above with MINUTES=8.8 (vr-4, 2026-12-04: 527 s of
# training, 558 s of wall time, the machine held 593 s with its start); then at once, while
# the machine is warm (it goes back 30 s after a command), run 2 from run 1's last weights,
# which are still in that machine's checkout (runs/gpu is git-ignored, so kept between calls):
#   cp runs/gpu/last.pt /tmp/init.pt && INIT=/tmp/init.pt MINUTES=3.2 LIMIT=265 LR=3e-5 \
#     WARMUP=50 bash training/gpu_run.sh     (carry ["data/gpu"], timeout 275 s)
# (192 s of training, 221 s of wall time; 827 s of the 900 held in all, 72 s left). The copy
# to /tmp keeps --force from facing its own init. Have that call ready before run 1 returns:
# a machine that went back has no runs/gpu, and too little time is left to start another.
# vr-2 and vr-3 did run 2 from a copy of $OUT/slim.pt brought back here into data/gpu (the
# checkpoint moved out of the checkout to make room): 8.0 + 2.8 minutes of training in 12.8
# device minutes. Then decoder_finetune on the CPU (20 to 45 minutes with encoding the crops;
# docs/training.md; --minutes 18 for vr-5d, 21.3 minutes in all) gained another 1.4% (vr-2 ->
# vr-2d), 1.2% (vr-3 -> vr-3d), about 1.1% (vr-4 -> vr-4d), about 1.2% (vr-5 -> vr-5d).
# vr-5e added a post-filter to the synthesis on the CPU (1.5%; docs/training.md), vr-5f gave it
# the quality (2.6% more); from them on, the GPU runs train the filter with every other weight
# (each crop's level gives it its quality: whole levels only, so the 10 qualities 1, 12, 23, ...,
# 100, where vr-5f's filter learnt from crops at random qualities; fractional levels would need
# their lambda mixed as the gains are: not done), and decoder_finetune retrains it with g_s (+0.004 dB
# held-out on vr-5f itself, not shipped: after a GPU run it should pay as it did before).
# OLD's kept copy (step 1) has a decoder.onnx that takes the quality: the runtime feeds it.
#   A line in training/LOG.md (train.log has steps, it/s and the held-out figures).
#
# Settings (environment variables, defaults in brackets):
#   INIT      checkpoint to start from [the one in training/checkpoints, the shipped model's]
#   MINUTES   training minutes of this run, compilation included [8]
#   SCHEDULE  "new": a fresh learning-rate schedule from INIT (warm-up, constant, anneal),
#             MINUTES long, or TOTAL when given; "carry": INIT's own schedule goes on (set TOTAL;
#             INIT then is the slim.pt of a run started with SCHEDULE=new and the same TOTAL; the
#             warm-up is done again, since the slim checkpoint has no optimizer state) [new]
#   TOTAL     the schedule's length in training minutes over all runs (needed with carry)
#   LMBDAS    the levels to train; INIT's gains are carried over to new ones in log lambda
#             (nicodec.training.model.remap_levels) [vr-1w's ten, 0.0005 to 0.15: Kodak from
#             0.10 to 1.54 bpp; the same list as INIT's, so nothing is remapped]
#   BATCH [64]  LR [1e-4]  WARMUP [200]  COMPILE [default]
#   PROBE     batch sizes to time before training (e.g. "32e,32,64"; e: eager) [none: the eager
#             rate at batch 64 is known, 30.75 and 30.9 steps/s on the H200 (vr-2, vr-3), and
#             measuring it again took about 13 s of the run; the run's own it/s is the compiled figure]
#   DATA [data/gpu/train]  VAL [data/gpu/val]  EXTRA (more arguments for nicodec.training,
#             separated by spaces)
#   DEVICE [cuda]; DEVICE=cpu tries the script out on a machine without a GPU, in about a
#             minute on 2 cores: OUT=/tmp/o DEVICE=cpu MINUTES=0.3 BATCH=2 COMPILE=
#             bash training/gpu_run.sh
#             (2026-12-06: tried so with the lent machine's own software, as the device tool's
#             page lists it: Python 3.12, torch 2.11.0, numpy 2.5.2, onnx 1.23.1, onnxruntime
#             1.30.0, in a venv given as PY; run 1's form, run 2's form with COMPILE=default,
#             whose step the CPU's inductor compiled in 212 s, then the export of its slim.pt)
#   LIMIT     the command's time limit in seconds: training stops 45 s before it, whatever
#             MINUTES says, so the final validation and checkpoint are written; a schedule that
#             would end after that is fitted into the time left when training starts, so that the
#             run still anneals (nicodec.training.schedule.fitted_to_deadline) [600]
#   PY        the Python that has torch [python3]
#
# $OUT/slim.pt is rewritten at every validation (every 1,000 steps), so a run that is cut
# short still brings back its last weights.
set -euo pipefail
start=$(date +%s)
: "${OUT:?OUT (the folder whose files come back) is not set}"
mkdir -p "$OUT"
if [ -z "${INIT:-}" ]; then  # the one checkpoint the tree keeps: the shipped model's
    shopt -s nullglob
    kept=(training/checkpoints/*.pt)
    shopt -u nullglob
    [ ${#kept[@]} -eq 1 ] || {
        echo "gpu_run: INIT is not set, and training/checkpoints holds ${#kept[@]} checkpoints, not one" >&2; exit 2; }
    INIT=${kept[0]}
fi
MINUTES=${MINUTES:-8}
SCHEDULE=${SCHEDULE:-new}
LMBDAS=${LMBDAS:-0.0005,0.0009,0.0018,0.0035,0.0067,0.013,0.025,0.0483,0.0932,0.15}
BATCH=${BATCH:-64}
LR=${LR:-1e-4}
WARMUP=${WARMUP:-200}
COMPILE=${COMPILE-default}
DATA=${DATA:-data/gpu/train}
DEVICE=${DEVICE:-cuda}
LIMIT=${LIMIT:-600}
PY=${PY:-python3}
VAL=${VAL:-data/gpu/val}

for path in "$INIT" "$DATA" "$VAL"; do
    [ -e "$path" ] || { echo "gpu_run: $path is missing (see the top of this script)" >&2; exit 2; }
done

"$PY" -c 'import torch' 2>/dev/null || {
    echo "gpu_run: $PY cannot import torch; PY=/path/to/python names one that can" >&2; exit 2; }

# nicodec importable without installing it: the package layout of pyproject.toml, from this checkout.
pkg=$(mktemp -d)
trap 'rm -rf "$pkg"' EXIT
cp -r runtime "$pkg/nicodec"
ln -s "$PWD/training" "$pkg/nicodec/training"
ln -s "$PWD/export" "$pkg/nicodec/export"
export PYTHONPATH="$pkg${PYTHONPATH:+:$PYTHONPATH}"

{
    if command -v nvidia-smi > /dev/null; then
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    fi
    "$PY" -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())'
    "$PY" -c 'import onnxruntime as ort; print("onnxruntime", ort.__version__, ort.get_available_providers())' || true
} 2>&1 | tee "$OUT/env.txt"
if [ "$DEVICE" = cuda ]; then
    "$PY" -c 'import torch; assert torch.cuda.is_available(), "no CUDA device"'
fi

# --force: runs/gpu is this script's scratch run (absent on the lent machine, left by a CPU try-out).
args=(--data "$DATA" --val-data "$VAL" --out runs/gpu --force --init "$INIT" --lmbdas "$LMBDAS" --batch "$BATCH" --lr "$LR"
      --warmup "$WARMUP" --device "$DEVICE" --crop 256 --minutes "$MINUTES" --steps 10000000 --val-every 1000
      --slim "$OUT/slim.pt" --deadline $((start + LIMIT - 45)))
if [ "$SCHEDULE" = new ]; then
    # TOTAL: a schedule that later runs carry on (SCHEDULE=carry with the same TOTAL); else this run's own.
    args+=(--new-schedule --total-minutes "${TOTAL:-$MINUTES}")
else
    : "${TOTAL:?SCHEDULE=carry needs TOTAL}"
    args+=(--total-minutes "$TOTAL")
fi
[ -n "$COMPILE" ] && args+=(--compile "$COMPILE")
PROBE=${PROBE-}
[ -n "$PROBE" ] && args+=(--probe "$PROBE")
# EXTRA is split on whitespace, without glob expansion (an argument cannot hold a space).
if [ -n "${EXTRA:-}" ]; then
    read -r -d '' -a extra <<< "$EXTRA" || true
    args+=("${extra[@]}")
fi

echo "$PY -m nicodec.training ${args[*]}" | tee "$OUT/command.txt"
"$PY" -m nicodec.training "${args[@]}" 2>&1 | tee "$OUT/train.log"
