//! A structural check of Matroska/WebM uploads before symphonia's demuxer reads them. The
//! demuxer allocates what the file declares (an element's size, a laced frame's size) before
//! reading it, and lets a negative EBML lacing delta wrap to terabytes: one damaged 10 kB
//! WebM aborts the process. Walking the EBML tree (RFC 8794, Matroska's element ids) and
//! refusing declarations that exceed the bytes there are bounds every such allocation by the
//! upload's own size.

use smai_core::Error;

/// Elements with children, in the sections the demuxer reads.
const MASTERS: [u64; 26] = [
    0x1A45DFA3, 0x18538067, 0x114D9B74, 0x4DBB, 0x1549A966, 0x1654AE6B, 0xAE, 0xE0, 0xE1, 0x6D80, 0x6240, 0x1F43B675,
    0xA0, 0x1C53BB6B, 0xBB, 0xB7, 0x1043A770, 0x45B9, 0xB6, 0x80, 0x1254C367, 0x7373, 0x63C0, 0x67C8, 0x1941A469,
    0x61A7,
];
/// Segment and Cluster may have an unknown size (live recordings): they run to their parent's end.
const UNSIZED_MASTERS: [u64; 2] = [0x18538067, 0x1F43B675];
const SIMPLE_BLOCK: u64 = 0xA3;
const BLOCK: u64 = 0xA1;
/// A leaf cut off by the end of the upload may be read (and allocated) whole; past this much
/// beyond the end, it is refused.
const TRUNCATION_SLACK: u64 = 1 << 20;

/// Whether `bytes` starts like an EBML (Matroska, WebM) file.
pub fn is_ebml(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1A, 0x45, 0xDF, 0xA3])
}

/// Refuses a Matroska/WebM file whose declared sizes exceed its bytes.
pub fn check(bytes: &[u8]) -> Result<(), Error> {
    walk(bytes, 0).map_err(|why| Error::invalid(format!("the WebM/Matroska file is damaged: {why}")))
}

fn walk(data: &[u8], depth: usize) -> Result<(), &'static str> {
    if depth > 16 {
        return Err("elements nested too deep");
    }
    let mut pos = 0;
    while pos < data.len() {
        let Some((id, id_len)) = vint(&data[pos..], true) else { return Err("an unreadable element id") };
        let Some((size, size_len)) = vint(&data[pos + id_len..], false) else {
            // The upload ends inside an element header: nothing more is read.
            return Ok(());
        };
        let start = pos + id_len + size_len;
        let left = (data.len() - start) as u64;
        let master = MASTERS.contains(&id);
        let unknown = size == all_ones(size_len);
        let payload = if unknown {
            if !UNSIZED_MASTERS.contains(&id) {
                return Err("an element of unknown size that must have one");
            }
            left
        } else if size > left {
            if !master && size - left > TRUNCATION_SLACK {
                return Err("an element larger than the file");
            }
            left
        } else {
            size
        };
        let body = &data[start..start + payload as usize];
        if master {
            walk(body, depth + 1)?;
        } else if (id == SIMPLE_BLOCK || id == BLOCK) && payload == size {
            check_lacing(body)?;
        }
        pos = start + payload as usize;
    }
    Ok(())
}

/// A block's laced frame sizes must fit in the block, as non-negative numbers.
fn check_lacing(block: &[u8]) -> Result<(), &'static str> {
    let Some((_track, track_len)) = vint(block, false) else { return Err("a block without a track number") };
    let Some(&flags) = block.get(track_len + 2) else { return Err("a block shorter than its header") };
    let mut pos = track_len + 3;
    let lacing = (flags >> 1) & 0b11;
    if lacing == 0b00 || lacing == 0b10 {
        return Ok(()); // one frame, or equal frames dividing the block
    }
    let Some(&stored) = block.get(pos) else { return Err("a laced block without a frame count") };
    pos += 1;
    let (mut total, mut last) = (0i64, 0i64);
    for n in 0..stored {
        let size = if lacing == 0b01 {
            // Xiph: a run of 255s and a final byte, summed.
            let mut size = 0i64;
            loop {
                let Some(&byte) = block.get(pos) else { return Err("laced frame sizes past the block") };
                pos += 1;
                size += i64::from(byte);
                if byte != 255 {
                    break size;
                }
            }
        } else {
            let Some((raw, len)) = vint(&block[pos.min(block.len())..], false) else {
                return Err("laced frame sizes past the block");
            };
            pos += len;
            // EBML lacing: the first size, then signed differences to the previous one.
            if n == 0 {
                raw as i64
            } else {
                last + raw as i64 - ((1i64 << (7 * len - 1)) - 1)
            }
        };
        if size < 0 {
            return Err("a negative laced frame size");
        }
        total += size;
        last = size;
        if total > (block.len() - pos.min(block.len())) as i64 {
            return Err("laced frames larger than their block");
        }
    }
    Ok(())
}

/// An EBML variable-length integer: (value, length). Ids keep their marker bit; sizes drop it.
fn vint(bytes: &[u8], keep_marker: bool) -> Option<(u64, usize)> {
    let first = *bytes.first()?;
    let len = first.leading_zeros() as usize + 1;
    if len > 8 || (keep_marker && len > 4) || bytes.len() < len {
        return None;
    }
    let mut value = if keep_marker { u64::from(first) } else { u64::from(first) & (0xFF >> len) };
    for &b in &bytes[1..len] {
        value = value << 8 | u64::from(b);
    }
    Some((value, len))
}

/// The reserved "unknown size" of a size field `len` bytes long.
fn all_ones(len: usize) -> u64 {
    (1u64 << (7 * len)) - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An element: a 1-4 byte id and a one-byte size (payloads under 127 bytes).
    fn element(id: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut out = id.to_vec();
        out.push(0x80 | payload.len() as u8);
        out.extend_from_slice(payload);
        out
    }

    fn file(blocks: &[Vec<u8>]) -> Vec<u8> {
        let cluster = element(&[0x1F, 0x43, 0xB6, 0x75], &blocks.concat());
        [element(&[0x1A, 0x45, 0xDF, 0xA3], &[]), element(&[0x18, 0x53, 0x80, 0x67], &cluster)].concat()
    }

    /// A SimpleBlock of track 1 with the given flags, lacing header and frame bytes.
    fn block(flags: u8, lacing: &[u8], frames: &[u8]) -> Vec<u8> {
        element(&[0xA3], &[&[0x81, 0, 0, flags][..], lacing, frames].concat())
    }

    #[test]
    fn plain_and_consistently_laced_blocks_pass() {
        assert!(is_ebml(&file(&[])));
        check(&file(&[block(0x80, &[], &[1, 2, 3])])).unwrap();
        // Xiph lacing: two stored sizes (3 and 2), then the last frame takes the rest.
        check(&file(&[block(0x82, &[2, 3, 2], &[0; 8])])).unwrap();
        // EBML lacing: 3, then +1 (a one-byte signed vint is its value less 63: 0xC0 is 64 - 63).
        check(&file(&[block(0x86, &[2, 0x83, 0xC0], &[0; 12])])).unwrap();
    }

    #[test]
    fn sizes_the_bytes_cannot_hold_are_refused() {
        // EBML lacing whose second size goes negative: 3, then -63.
        let negative = check(&file(&[block(0x86, &[2, 0x83, 0x80], &[0; 8])])).unwrap_err();
        assert!(negative.message.contains("negative"), "{}", negative.message);
        // Xiph sizes larger than the block.
        assert!(check(&file(&[block(0x82, &[1, 255, 255, 10], &[0; 8])])).is_err());
        let mut huge = element(&[0x1A, 0x45, 0xDF, 0xA3], &[]);
        // A Segment of unknown size, holding a CodecPrivate that claims 2^32 bytes.
        huge.extend_from_slice(&[0x18, 0x53, 0x80, 0x67, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
        huge.extend_from_slice(&[0x63, 0xA2, 0x01, 0, 0, 1, 0, 0, 0, 0, 0]);
        assert!(check(&huge).unwrap_err().message.contains("larger than the file"));
    }
}
