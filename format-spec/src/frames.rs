//! Framed zstd sections: the stored bytes are independent zstd frames back
//! to back, each decompressing to a known slice of the content, so a reader
//! can decompress on every core and write each frame at its own offset.
//!
//! ```text
//! stored bytes  | frame 0        | frame 1        | ... | frame n-1    |   stored_lens[i] bytes each
//! content       | frame_size     | frame_size     | ... | the rest     |   n = ceil(size / frame_size)
//!               ^ offset 0       ^ frame_size           ^ (n-1) * frame_size
//! ```
//!
//! The table ([`Frames`]) is part of the section's manifest entry, so it is
//! signed with everything else; it is still attacker input for an unsigned
//! artifact or a hostile signer, and [`Frames::spans`] checks it with
//! checked arithmetic before anyone uses an offset from it.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::error::{FormatError, Result};
use crate::section_kind::SectionKind;

/// Largest window a zstd frame may ask for (128 MiB). The writer uses at
/// most 2^27; a larger request is a memory-exhaustion attempt.
pub const MAX_ZSTD_WINDOW_LOG: u32 = 27;

/// The frame size writers use: 8 MiB of content per frame. Small enough
/// that a 100 MB root splits into a dozen frames for two cores, large
/// enough that the frames compress within 0.3 % of one frame (measured on
/// the Debian root at level 3).
pub const FRAME_SIZE: u64 = 8 << 20;
/// Smallest frame size a reader accepts: smaller frames compress badly and
/// would make tables long.
pub const MIN_FRAME_SIZE: u64 = 1 << 20;
/// Largest frame size a reader accepts: a reader holds up to two frames'
/// content per core in memory.
pub const MAX_FRAME_SIZE: u64 = 64 << 20;
/// Most frames in one section: bounds the table (8192 × 8 MiB = the 64 GiB
/// rootfs cap) and a reader's bookkeeping.
pub const MAX_FRAMES: usize = 8192;

/// The frame table of a framed section (SPEC.md 4.5).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Frames {
    /// Content bytes of every frame but the last; the last holds the rest
    /// (1 ..= `frame_size` bytes).
    pub frame_size: u64,
    /// Stored (compressed) length of each frame, in order; they add up to
    /// the section's `stored_len`.
    pub stored_lens: Vec<u64>,
}

/// Where one frame lies, in the stored bytes and in the content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameSpan {
    pub index: usize,
    /// Offset of the frame in the section's stored bytes.
    pub stored_offset: u64,
    pub stored_len: u64,
    /// Offset of the frame's content in the section's content.
    pub offset: u64,
    /// Content bytes of the frame.
    pub size: u64,
}

impl Frames {
    /// Checks the table against the section's `stored_len` and `size` and
    /// returns every frame's place. The table must cover the stored bytes
    /// exactly, frame after frame, and the content exactly, `frame_size`
    /// bytes at a time.
    pub fn spans(&self, stored_len: u64, size: u64) -> Result<Vec<FrameSpan>, String> {
        if !(MIN_FRAME_SIZE..=MAX_FRAME_SIZE).contains(&self.frame_size) {
            return Err(format!(
                "`frames.frame_size` {} is outside {MIN_FRAME_SIZE} ..= {MAX_FRAME_SIZE}",
                self.frame_size
            ));
        }
        let count = self.stored_lens.len();
        if count == 0 || count > MAX_FRAMES {
            return Err(format!(
                "`frames.stored_lens` has {count} entries, expected 1 ..= {MAX_FRAMES}"
            ));
        }
        let expected = size.div_ceil(self.frame_size).max(1);
        if u64::try_from(count).ok() != Some(expected) {
            return Err(format!(
                "`frames.stored_lens` has {count} entries, but size {size} in frames of {} bytes needs {expected}",
                self.frame_size
            ));
        }
        // A frame's compressed form exceeds its content by at most zstd's
        // ZSTD_COMPRESSBOUND (size + size/256 for 128 KiB and up); more is
        // not a frame a writer made. (Spelled out: calling zstd's function
        // would link its compressor into the stub.)
        let max_stored = self.frame_size + (self.frame_size >> 8);
        let mut spans = Vec::with_capacity(count);
        let mut stored_offset = 0u64;
        for (index, &len) in self.stored_lens.iter().enumerate() {
            if len == 0 || len > max_stored {
                return Err(format!(
                    "`frames.stored_lens[{index}]` is {len}, expected 1 ..= {max_stored}"
                ));
            }
            // count <= MAX_FRAMES and frame_size <= MAX_FRAME_SIZE: no overflow.
            let offset = index as u64 * self.frame_size;
            let frame_size = if index + 1 == count {
                size - offset
            } else {
                self.frame_size
            };
            spans.push(FrameSpan {
                index,
                stored_offset,
                stored_len: len,
                offset,
                size: frame_size,
            });
            stored_offset = stored_offset
                .checked_add(len)
                .ok_or_else(|| format!("`frames.stored_lens` overflow at entry {index}"))?;
        }
        if stored_offset != stored_len {
            return Err(format!(
                "`frames.stored_lens` add up to {stored_offset}, but `stored_len` is {stored_len}"
            ));
        }
        Ok(spans)
    }
}

/// Decodes frames one at a time into a buffer it keeps (one per thread).
pub struct FrameDecoder {
    dctx: zstd::bulk::Decompressor<'static>,
    out: Vec<u8>,
}

impl FrameDecoder {
    pub fn new(kind: SectionKind) -> Result<Self> {
        let dctx = zstd::bulk::Decompressor::new().map_err(|e| FormatError::Decompress {
            kind,
            fault: e.to_string(),
        })?;
        Ok(FrameDecoder {
            dctx,
            out: Vec::new(),
        })
    }

    /// Decompresses one frame's stored bytes and returns its content.
    /// `stored` must be exactly one zstd frame without a dictionary, with a
    /// window of at most 2^[`MAX_ZSTD_WINDOW_LOG`], that declares and
    /// produces exactly `span.size` bytes. The output buffer is sized from
    /// the (checked) table before decoding, and decoding never writes past
    /// it: a frame that would produce more fails there.
    pub fn decode(&mut self, kind: SectionKind, span: &FrameSpan, stored: &[u8]) -> Result<&[u8]> {
        let size = check_frame(kind, span, stored)?;
        // Decoded into the buffer's capacity (no zero fill first); the
        // decoder stops at the capacity, and anything but `size` bytes
        // is an error below.
        self.out.clear();
        self.out.reserve_exact(size);
        decompress(&mut self.dctx, kind, span, stored, &mut self.out)?;
        Ok(&self.out)
    }

    /// [`decode`](Self::decode), straight into `out`, which must be exactly
    /// `span.size` bytes (a writer's mapping of the frame's place in the
    /// file, say): no copy. On error `out` holds anything.
    pub fn decode_into(
        &mut self,
        kind: SectionKind,
        span: &FrameSpan,
        stored: &[u8],
        out: &mut [u8],
    ) -> Result<()> {
        let size = check_frame(kind, span, stored)?;
        if out.len() != size {
            return Err(frame_fault(
                kind,
                span,
                format!("a {}-byte output for {size} content bytes", out.len()),
            ));
        }
        decompress(&mut self.dctx, kind, span, stored, out)
    }

    /// The content of the frame decoded last.
    pub fn content(&self) -> &[u8] {
        &self.out
    }
}

fn frame_fault(kind: SectionKind, span: &FrameSpan, fault: String) -> FormatError {
    FormatError::Decompress {
        kind,
        fault: format!("frame {}: {fault}", span.index),
    }
}

/// Checks a frame's stored bytes against its table entry before decoding
/// (see [`FrameDecoder::decode`]); returns the content size.
fn check_frame(kind: SectionKind, span: &FrameSpan, stored: &[u8]) -> Result<usize> {
    let fault = |fault: String| frame_fault(kind, span, fault);
    if stored.len() as u64 != span.stored_len {
        return Err(fault(format!(
            "{} stored bytes, the table says {}",
            stored.len(),
            span.stored_len
        )));
    }
    check_frame_header(stored).map_err(fault)?;
    match zstd::zstd_safe::find_frame_compressed_size(stored) {
        Ok(n) if n == stored.len() => {}
        Ok(n) => {
            return Err(fault(format!(
                "{} stored bytes follow the frame",
                stored.len() - n
            )))
        }
        Err(code) => return Err(fault(zstd::zstd_safe::get_error_name(code).to_string())),
    }
    match zstd::zstd_safe::get_frame_content_size(stored) {
        Ok(Some(n)) if n == span.size => {}
        Ok(Some(n)) => {
            return Err(fault(format!(
                "declares {n} content bytes, the table says {}",
                span.size
            )))
        }
        _ => return Err(fault("declares no content size".into())),
    }
    usize::try_from(span.size).map_err(|_| fault("too large".into()))
}

/// Decodes a checked frame into `out`, which holds at most `span.size`
/// bytes; anything but exactly that many is an error.
fn decompress<C: zstd::zstd_safe::WriteBuf + ?Sized>(
    dctx: &mut zstd::bulk::Decompressor<'static>,
    kind: SectionKind,
    span: &FrameSpan,
    stored: &[u8],
    out: &mut C,
) -> Result<()> {
    let n = dctx
        .decompress_to_buffer(stored, out)
        .map_err(|e| frame_fault(kind, span, e.to_string()))?;
    if n as u64 == span.size {
        Ok(())
    } else {
        Err(frame_fault(
            kind,
            span,
            format!("produced {n} bytes, the table says {}", span.size),
        ))
    }
}

/// The frame header rules zstd's one-shot decoder does not enforce: the
/// magic number, no dictionary, a window within the cap.
fn check_frame_header(stored: &[u8]) -> Result<(), String> {
    const MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
    let (Some(magic), Some(&descriptor)) = (stored.get(..4), stored.get(4)) else {
        return Err("shorter than a frame header".into());
    };
    if magic != MAGIC {
        return Err(format!("bad magic {magic:02x?}, expected a zstd frame"));
    }
    if descriptor & 0b11 != 0 {
        return Err("names a dictionary; sections use none".into());
    }
    let single_segment = descriptor & 0b10_0000 != 0;
    if !single_segment {
        // Window descriptor: exponent (5 bits) and mantissa (3 bits).
        let wd = *stored.get(5).ok_or("shorter than a frame header")?;
        let log = 10 + u32::from(wd >> 3);
        if log > MAX_ZSTD_WINDOW_LOG || (log == MAX_ZSTD_WINDOW_LOG && wd & 0b111 != 0) {
            return Err(format!(
                "asks for a window over 2^{MAX_ZSTD_WINDOW_LOG} bytes"
            ));
        }
    }
    // A single-segment frame's window is its content size, which
    // decode_frame holds to the table's frame size (<= MAX_FRAME_SIZE).
    Ok(())
}

/// Compresses a stream into independent frames of [`FRAME_SIZE`] content
/// bytes on `workers` threads, writing the frames to `out` in order.
/// Frames are compressed as they fill; at most a few are held at a time.
/// Dropped without [`finish`](Self::finish), it closes the job channel
/// and its workers end on their own.
pub struct FramedEncoder<W: Write> {
    out: W,
    frame_size: usize,
    pending: Vec<u8>,
    jobs: Option<mpsc::SyncSender<(usize, Vec<u8>)>>,
    done: mpsc::Receiver<(usize, std::io::Result<Vec<u8>>)>,
    workers: Vec<std::thread::JoinHandle<()>>,
    sent: usize,
    written: usize,
    ready: BTreeMap<usize, Vec<u8>>,
    stored_lens: Vec<u64>,
    size: u64,
    max_in_flight: usize,
}

impl<W: Write> FramedEncoder<W> {
    /// `level` is the zstd level (1 ..= 22), `workers` the compressing
    /// threads (at least one is started).
    pub fn new(out: W, level: i32, workers: usize) -> std::io::Result<Self> {
        let workers = workers.max(1);
        let frame_size = usize::try_from(FRAME_SIZE).expect("8 MiB fits usize");
        let (jobs, job_rx) = mpsc::sync_channel::<(usize, Vec<u8>)>(workers);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (done_tx, done) = mpsc::channel();
        let mut handles = Vec::with_capacity(workers);
        for _ in 0..workers {
            let job_rx = Arc::clone(&job_rx);
            let done_tx = done_tx.clone();
            let mut compressor = zstd::bulk::Compressor::new(level)?;
            handles.push(std::thread::spawn(move || loop {
                let job = job_rx.lock().map(|rx| rx.recv());
                let Ok(Ok((index, input))) = job else {
                    return;
                };
                // bulk compression records the content size in the frame
                // header, which readers require.
                let frame = compressor.compress(&input);
                if done_tx.send((index, frame)).is_err() {
                    return;
                }
            }));
        }
        Ok(FramedEncoder {
            out,
            frame_size,
            pending: Vec::with_capacity(frame_size),
            jobs: Some(jobs),
            done,
            workers: handles,
            sent: 0,
            written: 0,
            ready: BTreeMap::new(),
            stored_lens: Vec::new(),
            size: 0,
            max_in_flight: 2 * workers + 1,
        })
    }

    fn dispatch(&mut self) -> std::io::Result<()> {
        let input = std::mem::replace(&mut self.pending, Vec::with_capacity(self.frame_size));
        let jobs = self.jobs.as_ref().expect("dispatch before finish");
        jobs.send((self.sent, input))
            .map_err(|_| std::io::Error::other("zstd frame worker stopped"))?;
        self.sent += 1;
        self.collect(false)?;
        while self.sent - self.written >= self.max_in_flight {
            self.collect(true)?;
        }
        Ok(())
    }

    /// Writes the finished frames that are next in order; with `wait`,
    /// first waits for at least one frame to finish.
    fn collect(&mut self, wait: bool) -> std::io::Result<()> {
        let stopped = || std::io::Error::other("zstd frame worker stopped");
        if wait {
            let (index, frame) = self.done.recv().map_err(|_| stopped())?;
            self.ready.insert(index, frame?);
        }
        while let Ok((index, frame)) = self.done.try_recv() {
            self.ready.insert(index, frame?);
        }
        while let Some(frame) = self.ready.remove(&self.written) {
            self.out.write_all(&frame)?;
            self.stored_lens.push(frame.len() as u64);
            self.written += 1;
        }
        Ok(())
    }

    /// Compresses what is left and returns the output and the frame table
    /// (at least one frame, even for empty input).
    pub fn finish(mut self) -> std::io::Result<(W, Frames)> {
        if !self.pending.is_empty() || self.sent == 0 {
            self.dispatch()?;
        }
        self.jobs = None;
        while self.written < self.sent {
            self.collect(true)?;
        }
        for h in self.workers.drain(..) {
            h.join()
                .map_err(|_| std::io::Error::other("zstd frame worker panicked"))?;
        }
        Ok((
            self.out,
            Frames {
                frame_size: FRAME_SIZE,
                stored_lens: self.stored_lens,
            },
        ))
    }

    /// Content bytes taken so far.
    pub fn content_len(&self) -> u64 {
        self.size
    }
}

impl<W: Write> Write for FramedEncoder<W> {
    fn write(&mut self, mut buf: &[u8]) -> std::io::Result<usize> {
        let taken = buf.len();
        while !buf.is_empty() {
            let room = self.frame_size - self.pending.len();
            let n = room.min(buf.len());
            self.pending.extend_from_slice(&buf[..n]);
            buf = &buf[n..];
            if self.pending.len() == self.frame_size {
                self.dispatch()?;
            }
        }
        self.size += taken as u64;
        Ok(taken)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Compressible but not trivial content of `len` bytes.
    fn content(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 20).to_le_bytes()[0] & 0x1f)
            .collect()
    }

    fn encode(data: &[u8]) -> (Vec<u8>, Frames) {
        let mut enc = FramedEncoder::new(Vec::new(), 1, 2).unwrap();
        enc.write_all(data).unwrap();
        assert_eq!(enc.content_len(), data.len() as u64);
        enc.finish().unwrap()
    }

    fn decode_all(stored: &[u8], frames: &Frames, size: u64) -> Result<Vec<u8>> {
        let spans = frames
            .spans(stored.len() as u64, size)
            .map_err(FormatError::Manifest)?;
        let mut dec = FrameDecoder::new(SectionKind::Rootfs)?;
        let mut out = Vec::new();
        for span in &spans {
            let start = usize::try_from(span.stored_offset).unwrap();
            let end = start + usize::try_from(span.stored_len).unwrap();
            out.extend_from_slice(dec.decode(SectionKind::Rootfs, span, &stored[start..end])?);
        }
        Ok(out)
    }

    #[test]
    fn frames_round_trip_and_cover_everything() {
        let size = 2 * usize::try_from(FRAME_SIZE).unwrap() + 12345;
        let data = content(size);
        let (stored, frames) = encode(&data);
        assert_eq!(frames.frame_size, FRAME_SIZE);
        assert_eq!(frames.stored_lens.len(), 3);
        assert_eq!(frames.stored_lens.iter().sum::<u64>(), stored.len() as u64);
        assert!(decode_all(&stored, &frames, size as u64).unwrap() == data);
        // A concatenation of frames is one valid zstd stream too.
        assert!(zstd::decode_all(&stored[..]).unwrap() == data);
    }

    #[test]
    fn decode_into_fills_the_frames_place_and_wants_its_exact_size() {
        let size = usize::try_from(FRAME_SIZE).unwrap() + 4321;
        let data = content(size);
        let (stored, frames) = encode(&data);
        let spans = frames.spans(stored.len() as u64, size as u64).unwrap();
        let mut dec = FrameDecoder::new(SectionKind::Rootfs).unwrap();
        let mut out = vec![0xaau8; size];
        for span in &spans {
            let s = usize::try_from(span.stored_offset).unwrap();
            let e = s + usize::try_from(span.stored_len).unwrap();
            let o = usize::try_from(span.offset).unwrap();
            let place = &mut out[o..o + usize::try_from(span.size).unwrap()];
            dec.decode_into(SectionKind::Rootfs, span, &stored[s..e], place)
                .unwrap();
        }
        assert!(out == data);
        let last = spans.last().unwrap();
        let s = usize::try_from(last.stored_offset).unwrap();
        let mut short = vec![0u8; 4320];
        let err = dec
            .decode_into(SectionKind::Rootfs, last, &stored[s..], &mut short)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("a 4320-byte output for 4321 content bytes"),
            "{err}"
        );
    }

    #[test]
    fn an_exact_multiple_has_no_empty_last_frame_and_empty_input_one_frame() {
        let data = content(usize::try_from(FRAME_SIZE).unwrap());
        let (_, frames) = encode(&data);
        assert_eq!(frames.stored_lens.len(), 1);
        let (stored, frames) = encode(&[]);
        assert_eq!(frames.stored_lens.len(), 1);
        assert_eq!(decode_all(&stored, &frames, 0).unwrap(), Vec::<u8>::new());
    }

    fn table(frame_size: u64, stored_lens: &[u64]) -> Frames {
        Frames {
            frame_size,
            stored_lens: stored_lens.to_vec(),
        }
    }

    #[test]
    fn bad_tables_are_rejected_naming_the_field() {
        let mib = 1 << 20;
        let cases: Vec<(Frames, u64, u64, &str)> = vec![
            (table(mib - 1, &[10]), 10, 100, "frame_size"),
            (table(MAX_FRAME_SIZE + 1, &[10]), 10, 100, "frame_size"),
            (table(mib, &[]), 0, 0, "0 entries"),
            (table(mib, &[5, 5]), 10, mib, "needs 1"),
            (table(mib, &[5]), 5, mib + 1, "needs 2"),
            (table(mib, &[0, 10]), 10, mib + 1, "stored_lens[0]"),
            (
                table(mib, &[mib + (mib >> 8) + 1]),
                mib + (mib >> 8) + 1,
                1,
                "stored_lens[0]",
            ),
            (table(mib, &[5, 5]), 11, mib + 1, "add up to 10"),
            (
                table(mib, &vec![1; MAX_FRAMES + 1]),
                MAX_FRAMES as u64 + 1,
                (MAX_FRAMES as u64 + 1) * mib,
                "expected 1 ..= 8192",
            ),
        ];
        for (frames, stored_len, size, want) in cases {
            let err = frames.spans(stored_len, size).unwrap_err();
            assert!(err.contains(want), "{frames:?}: {err}");
        }
        // No overflow: lengths near u64::MAX are caught by the bound.
        assert!(table(mib, &[u64::MAX, u64::MAX]).spans(0, 2 * mib).is_err());
    }

    /// The one frame of `data`, with its span.
    fn one_frame(data: &[u8]) -> (Vec<u8>, FrameSpan) {
        let stored = zstd::bulk::compress(data, 1).unwrap();
        let span = FrameSpan {
            index: 0,
            stored_offset: 0,
            stored_len: stored.len() as u64,
            offset: 0,
            size: data.len() as u64,
        };
        (stored, span)
    }

    fn decode_err(stored: &[u8], span: &FrameSpan) -> String {
        let mut dec = FrameDecoder::new(SectionKind::Kernel).unwrap();
        dec.decode(SectionKind::Kernel, span, stored)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn frames_that_break_the_rules_are_rejected() {
        let data = content(100_000);
        let (stored, span) = one_frame(&data);
        let mut dec = FrameDecoder::new(SectionKind::Kernel).unwrap();
        assert!(dec.decode(SectionKind::Kernel, &span, &stored).unwrap() == &data[..]);

        // Two frames where the table has one.
        let mut two = stored.clone();
        two.extend_from_slice(&stored);
        let span2 = FrameSpan {
            stored_len: two.len() as u64,
            ..span
        };
        assert!(decode_err(&two, &span2).contains("follow the frame"));
        // Content size other than the table's.
        let short = FrameSpan {
            size: span.size - 1,
            ..span
        };
        assert!(decode_err(&stored, &short).contains("declares 100000"));
        // Truncated.
        let cut = &stored[..stored.len() - 1];
        let span_cut = FrameSpan {
            stored_len: cut.len() as u64,
            ..span
        };
        assert!(!decode_err(cut, &span_cut).is_empty());
        // Stored length other than the table's.
        assert!(decode_err(cut, &span).contains("the table says"));
        // Not a zstd frame.
        let mut bad = stored.clone();
        bad[0] ^= 1;
        assert!(decode_err(&bad, &span).contains("magic"));
        // Names a dictionary.
        let mut dict = stored.clone();
        dict[4] |= 0b01;
        assert!(decode_err(&dict, &span).contains("dictionary"));
        // No content size in the header.
        let mut c = zstd::bulk::Compressor::new(1).unwrap();
        c.set_parameter(zstd::stream::raw::CParameter::ContentSizeFlag(false))
            .unwrap();
        let nosize = c.compress(&data).unwrap();
        let span_nosize = FrameSpan {
            stored_len: nosize.len() as u64,
            ..span
        };
        assert!(decode_err(&nosize, &span_nosize).contains("no content size"));
    }

    #[test]
    fn a_window_over_the_cap_is_refused() {
        // Magic, descriptor (no single segment, no checksum, no dict),
        // window descriptor exponent 18 (2^28).
        let mut header = vec![0x28, 0xb5, 0x2f, 0xfd, 0x00, 18 << 3];
        assert!(check_frame_header(&header).unwrap_err().contains("window"));
        header[5] = 17 << 3; // 2^27: the cap itself
        assert!(check_frame_header(&header).is_ok());
        header[5] = (17 << 3) | 1; // just over
        assert!(check_frame_header(&header).is_err());
    }
}
