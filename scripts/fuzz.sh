#!/usr/bin/env bash
# Runs every cargo-fuzz target for FUZZ_SECONDS (60) each, seeded from real
# inputs, and prints each target's executions and coverage. Needs cargo-fuzz
# (`cargo install cargo-fuzz`); runs on the stable toolchain without a
# sanitizer (`-s none`: Rust code is memory-safe, and the one C library on
# the decode path, libjpeg-turbo, is fuzzed continuously by OSS-Fuzz; what is
# fuzzed here is panics, aborts, hangs and runaway allocation; on nightly,
# FUZZ_SANITIZER=address adds ASan). A crash leaves its input in
# fuzz/artifacts/<target>/; turn it into a regression test, then fix it.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${FUZZ_SECONDS:-60}
TARGETS=${FUZZ_TARGETS:-"decode_image base64_field multipart_frame parse_token"}

seed() {
    local dir=fuzz/corpus/$1
    mkdir -p "$dir"
    case $1 in
        decode_image)
            # Real JPEGs (one with EXIF) and a PNG made from one.
            for f in models/samples/Female_40_1_1_1.jpg models/samples/Male_22_1_1_1.jpg; do
                [ -f "$f" ] && cp "$f" "$dir/"
            done
            printf '\x89PNG\r\n\x1a\n' > "$dir/png-magic"
            printf '\xff\xd8\xff\xe1\x00\x10Exif\x00\x00II*\x00' > "$dir/exif-start"
            ;;
        base64_field)
            printf 'aGVsbG8gd29ybGQ=' > "$dir/plain"
            printf 'data:image/jpeg;base64,/9j/4AAQ' > "$dir/data-url"
            printf 'aGVs\nbG8=\n' > "$dir/wrapped"
            ;;
        multipart_frame)
            printf -- '--fuzz\r\ncontent-disposition: form-data; name="capturedMs"\r\n\r\n1234\r\n--fuzz\r\ncontent-disposition: form-data; name="frame"; filename="f.jpg"\r\ncontent-type: image/jpeg\r\n\r\n\xff\xd8\xff\xe0\r\n--fuzz--\r\n' > "$dir/frame"
            ;;
        parse_token)
            printf 'eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCIsImtpZCI6ImtfMSJ9.eyJzdWIiOiJjMSJ9.c2ln' > "$dir/es256"
            printf 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJjMSJ9.' > "$dir/none"
            ;;
    esac
}

for target in $TARGETS; do
    seed "$target"
    echo "== $target: ${SECONDS_EACH} s"
    cargo fuzz run -s "${FUZZ_SANITIZER:-none}" --release "$target" "fuzz/corpus/$target" -- \
        -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 2>&1 \
        | grep -E '(DONE|stat::number_of_executed_units|stat::peak_rss_mb|==|SUMMARY|.*deadly signal|.*panicked)' || true
done
