//! Criterion benchmark of frame + parse throughput on a large realistic AMI stream.
//!
//! The stream is made at bench time by `fixtures/bench/gen_ami.py -n 200000` and cached under
//! the target directory. Without the script or python3 the bench says so and falls back to the real captures
//! in `fixtures/ami/real` repeated to a similar size, so it still measures something real.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;

use ami_proto::{Decoder, Frame};
use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const PACKETS: &str = "200000";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn generator() -> Option<PathBuf> {
    Some(workspace_root().join("fixtures/bench/gen_ami.py")).filter(|p| p.is_file())
}

/// The generated stream, made once and kept in the target directory.
fn generated() -> Option<Vec<u8>> {
    let script = generator().or_else(|| {
        eprintln!("parse bench: fixtures/bench/gen_ami.py not found in the workspace");
        None
    })?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let out = target.join("ami-bench").join(format!("gen-{PACKETS}.ami"));
    if !out.is_file() {
        std::fs::create_dir_all(out.parent()?).ok()?;
        let status = Command::new("python3")
            .arg(&script)
            .args(["-n", PACKETS, "-o"])
            .arg(&out)
            .status();
        match status {
            Ok(s) if s.success() => {}
            other => {
                eprintln!(
                    "parse bench: running {} failed: {other:?}",
                    script.display()
                );
                return None;
            }
        }
    }
    std::fs::read(&out).ok()
}

/// The real captures (server side only) repeated to about 40 MB.
fn fallback() -> Vec<u8> {
    let dir = workspace_root().join("fixtures/ami/real");
    let mut one = Vec::new();
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.to_string_lossy().ends_with(".recv.ami") {
            let bytes = std::fs::read(&path).unwrap_or_default();
            // Drop each capture's banner line: only the first line of a stream may be one.
            let body = bytes
                .iter()
                .position(|&b| b == b'\n')
                .map_or(&bytes[..], |i| &bytes[i + 1..]);
            one.extend_from_slice(body);
        }
    }
    let mut stream = b"Asterisk Call Manager/9.0.0\r\n".to_vec();
    while !one.is_empty() && stream.len() < 40 << 20 {
        stream.extend_from_slice(&one);
    }
    stream
}

/// Frames and parses `data` in reads of `chunk` bytes, as a socket would deliver it.
fn run(data: &[u8], chunk: usize) -> u64 {
    let mut decoder = Decoder::new();
    let mut buf = BytesMut::with_capacity(chunk.max(1 << 16));
    let mut packets = 0;
    for piece in data.chunks(chunk) {
        buf.extend_from_slice(piece);
        while let Ok(Some(frame)) = decoder.decode(&mut buf) {
            if let Frame::Packet(p) = frame {
                black_box(p.kind());
                packets += 1;
            }
        }
    }
    packets
}

fn bench(c: &mut Criterion) {
    let data = generated().unwrap_or_else(|| {
        eprintln!("parse bench: falling back to the real captures in fixtures/ami/real, repeated");
        fallback()
    });
    let mut group = c.benchmark_group("frame+parse");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.sample_size(20);
    for chunk in [4096, 65536] {
        group.bench_function(format!("reads of {chunk} bytes"), |b| {
            b.iter(|| run(black_box(&data), chunk))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
