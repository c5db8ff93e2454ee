//! `ami-dump`: prints raw AMI bytes (either direction of a session) as one JSON object per packet,
//! or with `--count` measures how fast the framer and parser get through a capture.
//!
//! Usage: `ami-dump [FILE|-]` and `ami-dump --count [--chunk BYTES] FILE`. The exact output
//! format is part of the project interface (`docs/ami-proto.md`, section `ami-dump`).

use std::io::{self, BufWriter, Read, Write};
use std::process::ExitCode;
use std::time::Instant;

use ami_proto::{DecodeError, Decoder, Frame, Packet};
use bytes::BytesMut;

const USAGE: &str = "usage: ami-dump [FILE|-]\n       ami-dump --count [--chunk BYTES] [FILE|-]";

/// The command line, parsed by hand: three flags do not justify an argument-parser dependency
/// in a library crate.
struct Args {
    count: bool,
    chunk: usize,
    file: Option<String>,
}

/// The largest `--chunk`: a socket never hands over more than this in one read, and a larger
/// value would only make `count` allocate a buffer of that size before measuring anything.
const MAX_CHUNK: usize = 64 << 20;

/// Reads `--chunk BYTES`: a whole number from 1 to [`MAX_CHUNK`].
fn parse_chunk(value: &str) -> Result<usize, String> {
    match value.parse::<u64>() {
        Ok(0) => Err("--chunk: 0 bytes per read would never get through the input; give 1 to 67108864 (64 MiB)".to_owned()),
        Ok(n) if n > MAX_CHUNK as u64 => Err(format!(
            "--chunk: {n} bytes is more than the 67108864 (64 MiB) allowed per read"
        )),
        Ok(n) => usize::try_from(n).map_err(|_| format!("--chunk: {n} is too large")),
        Err(_) => {
            let shown: String = value.chars().take(32).collect();
            Err(format!(
                "--chunk: {shown:?} is not a whole number of bytes (1 to 67108864)"
            ))
        }
    }
}

fn parse_args() -> Result<Args, String> {
    parse_args_from(std::env::args().skip(1))
}

fn parse_args_from(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut args = Args {
        count: false,
        chunk: 4096,
        file: None,
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--count" => args.count = true,
            "--chunk" => {
                let value = it.next().ok_or("--chunk needs a number of bytes")?;
                args.chunk = parse_chunk(&value)?;
            }
            "-h" | "--help" => return Err(String::new()),
            _ if arg.starts_with("--") => return Err(format!("unknown option {arg}")),
            _ => {
                if args.file.replace(arg).is_some() {
                    return Err("only one FILE may be given".to_owned());
                }
            }
        }
    }
    Ok(args)
}

fn open(file: Option<&str>) -> io::Result<Box<dyn Read>> {
    match file {
        None | Some("-") => Ok(Box::new(io::stdin().lock())),
        Some(path) => Ok(Box::new(std::fs::File::open(path)?)),
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(msg) => {
            if msg.is_empty() {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            eprintln!("ami-dump: {msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let name = args.file.clone().unwrap_or_else(|| "-".to_owned());
    let input = match open(args.file.as_deref()) {
        Ok(input) => input,
        Err(e) => {
            eprintln!("ami-dump: cannot open {name}: {e}");
            return ExitCode::from(2);
        }
    };
    let result = if args.count {
        count(input, args.chunk)
    } else {
        dump(input)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Decode(e)) => {
            // Every decoding error names its byte offset in the message itself.
            eprintln!("ami-dump: {name}: {e}");
            ExitCode::FAILURE
        }
        Err(Failure::Io(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(Failure::Io(e)) => {
            eprintln!("ami-dump: {name}: {e}");
            ExitCode::FAILURE
        }
    }
}

enum Failure {
    Decode(DecodeError),
    Io(io::Error),
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        Failure::Io(e)
    }
}

/// Prints every frame as JSON; stops at the first decoding error after flushing what came before.
fn dump(mut input: Box<dyn Read>) -> Result<(), Failure> {
    let mut out = BufWriter::with_capacity(1 << 16, io::stdout().lock());
    let mut decoder = Decoder::new();
    let mut buf = BytesMut::with_capacity(1 << 16);
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        let n = input.read(&mut chunk)?;
        if n > 0 {
            buf.extend_from_slice(&chunk[..n]);
        }
        loop {
            let next = if n == 0 {
                decoder.decode_eof(&mut buf)
            } else {
                decoder.decode(&mut buf)
            };
            match next {
                Ok(Some(frame)) => write_frame(&mut out, &frame)?,
                Ok(None) => break,
                Err(e) => {
                    out.flush()?;
                    return Err(Failure::Decode(e));
                }
            }
        }
        if n == 0 {
            out.flush()?;
            return Ok(());
        }
    }
}

fn write_frame(out: &mut impl Write, frame: &Frame) -> io::Result<()> {
    match frame {
        Frame::Banner(banner) => {
            out.write_all(b"{\"kind\":\"banner\",\"name\":")?;
            serde_json::to_writer(&mut *out, banner.line())?;
            out.write_all(b",\"headers\":[]}\n")
        }
        Frame::Packet(packet) => write_packet(out, packet),
    }
}

fn write_packet(out: &mut impl Write, packet: &Packet) -> io::Result<()> {
    out.write_all(b"{\"kind\":\"")?;
    out.write_all(packet.kind().as_str().as_bytes())?;
    out.write_all(b"\",\"name\":")?;
    serde_json::to_writer(&mut *out, packet.name().as_deref().unwrap_or(""))?;
    out.write_all(b",\"headers\":[")?;
    for (i, h) in packet.headers().enumerate() {
        out.write_all(if i == 0 { b"[" } else { b",[" })?;
        serde_json::to_writer(&mut *out, &String::from_utf8_lossy(h.key_bytes()))?;
        out.write_all(b",")?;
        // The interface promises replacement characters here, not a guessed encoding.
        serde_json::to_writer(&mut *out, &String::from_utf8_lossy(h.value_bytes()))?;
        out.write_all(b"]")?;
    }
    out.write_all(b"]")?;
    // The raw CLI text of a legacy `Response: Follows` answer is not a header; it is printed
    // as an extra member so that nothing on the wire is lost.
    if let Some(body) = packet.follows_body() {
        out.write_all(b",\"body\":")?;
        serde_json::to_writer(&mut *out, &String::from_utf8_lossy(body))?;
    }
    out.write_all(b"}\n")
}

/// Feeds the whole input through the decoder in reads of `chunk` bytes and reports the speed.
/// The input is read into memory first so that only parsing is timed.
fn count(mut input: Box<dyn Read>, chunk: usize) -> Result<(), Failure> {
    let mut data = Vec::new();
    input.read_to_end(&mut data)?;
    let mut decoder = Decoder::new();
    let mut buf = BytesMut::with_capacity(chunk.max(1 << 16));
    let mut packets = 0u64;
    let started = Instant::now();
    let mut pieces = data.chunks(chunk).peekable();
    loop {
        let last = match pieces.next() {
            Some(piece) => {
                buf.extend_from_slice(piece);
                pieces.peek().is_none()
            }
            None => true,
        };
        loop {
            let next = if last {
                decoder.decode_eof(&mut buf)
            } else {
                decoder.decode(&mut buf)
            };
            match next {
                Ok(Some(Frame::Packet(_))) => packets += 1,
                Ok(Some(Frame::Banner(_))) => {}
                Ok(None) => break,
                Err(e) => return Err(Failure::Decode(e)),
            }
        }
        if last {
            break;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "packets={packets} bytes={} seconds={seconds:.6}",
        data.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk_of(value: &str) -> Result<usize, String> {
        parse_args_from(
            ["--count", "--chunk", value, "f"]
                .into_iter()
                .map(String::from),
        )
        .map(|a| a.chunk)
    }

    #[test]
    fn chunk_sizes_are_bounded() {
        assert_eq!(chunk_of("1"), Ok(1));
        assert_eq!(chunk_of("4096"), Ok(4096));
        assert_eq!(chunk_of("67108864"), Ok(64 << 20));
        for bad in [
            "0",
            "67108865",
            "18446744073709551616",
            "-1",
            "4k",
            "",
            " 12",
        ] {
            let e = chunk_of(bad).expect_err(bad);
            assert!(e.starts_with("--chunk: "), "{bad}: {e}");
        }
        assert!(
            chunk_of("99999999999")
                .expect_err("huge")
                .contains("64 MiB")
        );
        assert!(chunk_of("0").expect_err("zero").contains("0 bytes"));
    }
}
