//! RTP (RFC 3550) for the media check: our outbound packets (G.711 silence,
//! 20ms each) and the figures of the inbound stream: packets, audio seconds,
//! loss from sequence numbers, interarrival jitter, and whether it is silence.

use std::time::Duration;

use super::sdp::{PCMA, PCMU};

/// G.711 is 8000 samples per second, one byte each.
pub const CLOCK_RATE: u32 = 8000;
/// 20ms of G.711.
pub const FRAME: usize = 160;
pub const PACKET_INTERVAL: Duration = Duration::from_millis(20);
/// Frames quieter than this (dBFS) are silence. Comfort noise and line
/// hiss sit around -60 to -70 dBFS; speech and tones well above -40.
const SILENCE_DBFS: f64 = -50.0;
/// Inbound audio is "not silence" when at least this share of frames is louder.
const AUDIO_FRAMES: f64 = 0.1;

/// One outbound packet of silence.
pub fn packet(payload_type: u8, seq: u16, timestamp: u32, ssrc: u32) -> Vec<u8> {
    let mut p = Vec::with_capacity(12 + FRAME);
    p.push(0x80);
    p.push(payload_type & 0x7f);
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&timestamp.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    let silence = if payload_type == PCMA { 0xd5 } else { 0xff };
    p.resize(12 + FRAME, silence);
    p
}

/// The fields of an inbound packet we use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header<'a> {
    pub payload_type: u8,
    pub seq: u16,
    pub timestamp: u32,
    pub payload: &'a [u8],
}

/// Parse an RTP packet; `None` if it is not one. Never panics.
pub fn parse(b: &[u8]) -> Option<Header<'_>> {
    if b.len() < 12 || b[0] >> 6 != 2 {
        return None;
    }
    let csrc = usize::from(b[0] & 0x0f);
    let mut start = 12 + 4 * csrc;
    if b[0] & 0x10 != 0 {
        let ext = b.get(start + 2..start + 4)?;
        start += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
    }
    let mut end = b.len();
    if b[0] & 0x20 != 0 {
        end = end.checked_sub(usize::from(*b.last()?))?;
    }
    Some(Header {
        payload_type: b[1] & 0x7f,
        seq: u16::from_be_bytes([b[2], b[3]]),
        timestamp: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        payload: b.get(start..end)?,
    })
}

/// What the inbound stream looked like.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MediaStats {
    pub packets: u64,
    /// Audio received, from payload sizes.
    pub audio: Duration,
    /// Lost packets / expected packets, 0 to 1.
    pub loss: f64,
    /// RFC 3550 interarrival jitter.
    pub jitter: Duration,
    /// Whether enough frames were louder than silence.
    pub heard_audio: bool,
}

/// Accumulates inbound packets (RFC 3550 A.1 and A.8, simplified: one
/// source, no probation).
#[derive(Debug, Default)]
pub struct Receiver {
    packets: u64,
    samples: u64,
    loud_frames: u64,
    frames: u64,
    first_seq: Option<u16>,
    /// Extended highest sequence number.
    highest: u32,
    /// Last (arrival in RTP units, timestamp) and jitter in RTP units.
    last: Option<(f64, u32)>,
    jitter: f64,
}

impl Receiver {
    /// Account for one packet that arrived `at` after the call began.
    pub fn on_packet(&mut self, h: &Header<'_>, at: Duration) {
        self.packets += 1;
        self.samples += h.payload.len() as u64;
        if h.payload_type == PCMU || h.payload_type == PCMA {
            self.frames += 1;
            if frame_dbfs(h.payload, h.payload_type == PCMA) > SILENCE_DBFS {
                self.loud_frames += 1;
            }
        }
        match self.first_seq {
            None => {
                self.first_seq = Some(h.seq);
                self.highest = u32::from(h.seq);
            }
            Some(_) => {
                // Extend with the cycle count, the way RFC 3550 A.1 does.
                let cycles = self.highest & 0xffff_0000;
                let low = self.highest as u16;
                let ext = if h.seq < low && low - h.seq > 0x8000 {
                    cycles + 0x1_0000 + u32::from(h.seq)
                } else {
                    cycles + u32::from(h.seq)
                };
                self.highest = self.highest.max(ext);
            }
        }
        let arrival = at.as_secs_f64() * f64::from(CLOCK_RATE);
        if let Some((prev_arrival, prev_ts)) = self.last {
            let transit_diff =
                (arrival - prev_arrival) - f64::from(h.timestamp.wrapping_sub(prev_ts) as i32);
            self.jitter += (transit_diff.abs() - self.jitter) / 16.0;
        }
        self.last = Some((arrival, h.timestamp));
    }

    pub fn audio(&self) -> Duration {
        Duration::from_secs_f64(self.samples as f64 / f64::from(CLOCK_RATE))
    }

    pub fn stats(&self) -> MediaStats {
        let expected = match self.first_seq {
            None => 0,
            Some(first) => u64::from(self.highest - u32::from(first)) + 1,
        };
        let lost = expected.saturating_sub(self.packets);
        MediaStats {
            packets: self.packets,
            audio: self.audio(),
            loss: if expected == 0 {
                0.0
            } else {
                lost as f64 / expected as f64
            },
            jitter: Duration::from_secs_f64(self.jitter / f64::from(CLOCK_RATE)),
            heard_audio: self.frames > 0
                && self.loud_frames as f64 >= AUDIO_FRAMES * self.frames as f64,
        }
    }
}

/// Energy of a G.711 frame in dBFS.
fn frame_dbfs(payload: &[u8], alaw: bool) -> f64 {
    if payload.is_empty() {
        return f64::NEG_INFINITY;
    }
    let sum: f64 = payload
        .iter()
        .map(|b| {
            let s = f64::from(if alaw {
                alaw_to_linear(*b)
            } else {
                ulaw_to_linear(*b)
            });
            s * s
        })
        .sum();
    let rms = (sum / payload.len() as f64).sqrt();
    20.0 * (rms.max(1e-9) / 32768.0).log10()
}

/// ITU-T G.711 mu-law expansion.
fn ulaw_to_linear(u: u8) -> i16 {
    let u = !u;
    let t = ((i16::from(u & 0x0f) << 3) + 0x84) << ((u & 0x70) >> 4);
    if u & 0x80 != 0 { 0x84 - t } else { t - 0x84 }
}

/// ITU-T G.711 A-law expansion.
fn alaw_to_linear(a: u8) -> i16 {
    let a = a ^ 0x55;
    let seg = (a & 0x70) >> 4;
    let mut t = i16::from(a & 0x0f) << 4;
    t = match seg {
        0 => t + 8,
        1 => t + 0x108,
        _ => (t + 0x108) << (seg - 1),
    };
    if a & 0x80 != 0 { t } else { -t }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ulaw_from_linear(s: i16) -> u8 {
        // Encoder for the tests only (G.711 compression).
        let sign = if s < 0 { 0x80 } else { 0 };
        let mag = (i32::from(s).abs().min(32635) + 0x84) as u32;
        let exp = (31 - mag.leading_zeros()).saturating_sub(7).min(7);
        let mant = (mag >> (exp + 3)) & 0x0f;
        !(sign | ((exp as u8) << 4) | mant as u8)
    }

    #[test]
    fn g711_expansion_matches_the_reference_points() {
        assert_eq!(ulaw_to_linear(0xff), 0);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(alaw_to_linear(0xd5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xaa), 32256);
    }

    fn tone(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| {
                let s = (i as f64 * 2.0 * std::f64::consts::PI * 440.0 / 8000.0).sin() * 8000.0;
                ulaw_from_linear(s as i16)
            })
            .collect()
    }

    #[test]
    fn loss_jitter_and_audio() {
        let mut r = Receiver::default();
        let loud = tone(FRAME);
        // 10 packets, seq 65530..=65539 wrapping, one missing, 20ms apart exactly.
        for i in 0u16..10 {
            if i == 4 {
                continue;
            }
            let h = Header {
                payload_type: PCMU,
                seq: 65530u16.wrapping_add(i),
                timestamp: u32::from(i) * 160,
                payload: &loud,
            };
            r.on_packet(&h, Duration::from_millis(u64::from(i) * 20));
        }
        let s = r.stats();
        assert_eq!(s.packets, 9);
        assert!((s.loss - 0.1).abs() < 1e-9, "{s:?}");
        assert!(s.jitter < Duration::from_micros(10), "{s:?}");
        assert_eq!(s.audio, Duration::from_millis(180));
        assert!(s.heard_audio);
    }

    #[test]
    fn silence_is_silence_and_irregular_arrival_is_jitter() {
        let mut r = Receiver::default();
        let silent = packet(PCMU, 0, 0, 1);
        for i in 0u16..50 {
            let mut p = silent.clone();
            p[2..4].copy_from_slice(&i.to_be_bytes());
            p[4..8].copy_from_slice(&(u32::from(i) * 160).to_be_bytes());
            let at = Duration::from_millis(u64::from(i) * 20 + if i % 2 == 0 { 0 } else { 10 });
            r.on_packet(&parse(&p).unwrap(), at);
        }
        let s = r.stats();
        assert!(!s.heard_audio);
        assert_eq!((s.packets, s.loss), (50, 0.0));
        assert!(s.jitter > Duration::from_millis(5), "{s:?}");
    }

    #[test]
    fn our_packets_parse() {
        let p = packet(PCMA, 7, 1120, 99);
        let h = parse(&p).unwrap();
        assert_eq!(
            (h.payload_type, h.seq, h.timestamp, h.payload.len()),
            (PCMA, 7, 1120, FRAME)
        );
        assert!(h.payload.iter().all(|b| *b == 0xd5));
        assert!(parse(&p[..11]).is_none());
    }

    proptest! {
        #[test]
        fn random_packets_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400), ms in 0u64..100_000) {
            let mut r = Receiver::default();
            if let Some(h) = parse(&bytes) {
                r.on_packet(&h, Duration::from_millis(ms));
                r.on_packet(&h, Duration::from_millis(ms / 2));
            }
            let s = r.stats();
            prop_assert!((0.0..=1.0).contains(&s.loss));
        }
    }
}
