//! A minimal FLAC writer of digital silence at any rate (RFC 9639): a STREAMINFO block, then
//! fixed-size frames of one constant 16-bit mono subframe, with CRC-8 headers and CRC-16
//! footers. An hour at 384 kHz is about 314 kB, the shape of file that claims gigabytes.

/// Samples per frame (the largest the 16-bit block-size field holds).
const BLOCK: u64 = 65_535;

/// `samples` of silence at `rate`; `state_total` writes the count into STREAMINFO (0 is
/// "unknown", so a decoder learns the length only by decoding).
pub fn silence(rate: u32, samples: u64, state_total: bool) -> Vec<u8> {
    let mut out = b"fLaC".to_vec();
    out.extend_from_slice(&[0x80, 0, 0, 34]); // last metadata block, STREAMINFO, 34 bytes
    out.extend_from_slice(&(BLOCK as u16).to_be_bytes()); // min block size
    out.extend_from_slice(&(BLOCK as u16).to_be_bytes()); // max block size
    out.extend_from_slice(&[0; 6]); // min and max frame size: unknown
    let total = if state_total { samples } else { 0 };
    // rate (20 bits) | channels - 1 (3) | bits per sample - 1 (5) | total samples (36)
    let packed = (rate as u64) << 44 | 15 << 36 | (total & 0xF_FFFF_FFFF);
    out.extend_from_slice(&packed.to_be_bytes());
    out.extend_from_slice(&[0; 16]); // MD5: not computed
    let mut written = 0;
    for number in 0.. {
        if written >= samples {
            break;
        }
        let block = BLOCK.min(samples - written);
        frame(&mut out, number, block as u16);
        written += block;
    }
    out
}

fn frame(out: &mut Vec<u8>, number: u32, block: u16) {
    let start = out.len();
    // Sync + fixed block size; block size (16 bits at the end) and rate from STREAMINFO;
    // mono, 16 bits per sample.
    out.extend_from_slice(&[0xFF, 0xF8, 0x70, 0x08]);
    out.extend_from_slice(&utf8_number(number));
    out.extend_from_slice(&(block - 1).to_be_bytes());
    let crc8 = crc(&out[start..], 0x07, 8);
    out.push(crc8 as u8);
    out.extend_from_slice(&[0x00, 0x00, 0x00]); // constant subframe of value 0
    let crc16 = crc(&out[start..], 0x8005, 16);
    out.extend_from_slice(&(crc16 as u16).to_be_bytes());
}

/// The frame number in FLAC's UTF-8-like coding (up to 2^21 frames).
fn utf8_number(n: u32) -> Vec<u8> {
    let cont = |shift: u32| 0x80 | ((n >> shift) & 0x3F) as u8;
    match n {
        0..0x80 => vec![n as u8],
        0x80..0x800 => vec![0xC0 | (n >> 6) as u8, cont(0)],
        0x800..0x10000 => vec![0xE0 | (n >> 12) as u8, cont(6), cont(0)],
        _ => vec![0xF0 | (n >> 18) as u8, cont(12), cont(6), cont(0)],
    }
}

/// MSB-first CRC with initial value 0, as FLAC's CRC-8 and CRC-16 are.
fn crc(bytes: &[u8], poly: u32, width: u32) -> u32 {
    let top = 1 << (width - 1);
    let mask = (1u32 << width) - 1;
    let mut crc = 0u32;
    for &b in bytes {
        crc ^= (b as u32) << (width - 8);
        for _ in 0..8 {
            let shifted = if crc & top != 0 { (crc << 1) ^ poly } else { crc << 1 };
            crc = shifted & mask;
        }
    }
    crc
}
