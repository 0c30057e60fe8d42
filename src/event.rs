//! The synthetic trading-event stream `walctl record` writes and the tests check: the
//! payload of record `seq` is a pure function of `seq`, so any reader can tell whether a
//! record is the one that was written. Layout (64 bytes, little-endian), documented in
//! docs/EVENTS.md:
//!
//! ```text
//!  0 seq u64 | 8 timestamp ns u64 | 16 order id u64 | 24 instrument u32 | 28 side u8
//! 29 kind u8 | 30 zero u16 | 32 price i64 (1e-4) | 40 quantity u32 | 44 zero u32
//! 48 trader id u64 | 56 zero u64
//! ```
//!
//! Records longer than 64 bytes repeat the 64 event bytes; shorter ones keep a prefix.

/// Size of one encoded event.
pub const EVENT_LEN: usize = 64;

/// Timestamp of sequence number 0: 2026-01-01T00:00:00Z in nanoseconds.
const BASE_TS_NS: u64 = 1_767_225_600_000_000_000;

/// What the event does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A new order.
    New,
    /// A cancel.
    Cancel,
    /// A modification.
    Modify,
    /// A trade.
    Trade,
}

/// One decoded trading event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TradeEvent {
    /// The record's sequence number.
    pub seq: u64,
    /// Exchange timestamp, ns since the Unix epoch.
    pub ts_ns: u64,
    /// Order id.
    pub order_id: u64,
    /// Instrument id.
    pub instrument: u32,
    /// 0 buy, 1 sell.
    pub side: u8,
    /// Event kind.
    pub kind: Kind,
    /// Price in 1e-4 units.
    pub price: i64,
    /// Quantity.
    pub qty: u32,
    /// Trader id.
    pub trader: u64,
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl TradeEvent {
    /// The event of sequence number `seq`.
    pub fn for_seq(seq: u64) -> Self {
        let m = splitmix64(seq);
        let instrument = (m % 32) as u32;
        let kind = match (m >> 8) % 10 {
            0..=4 => Kind::New,
            5..=7 => Kind::Cancel,
            8 => Kind::Modify,
            _ => Kind::Trade,
        };
        TradeEvent {
            seq,
            ts_ns: BASE_TS_NS
                .wrapping_add(seq.wrapping_mul(250))
                .wrapping_add((m >> 40) % 200),
            order_id: 1_000_000u64.wrapping_add(seq / 2),
            instrument,
            side: ((m >> 12) & 1) as u8,
            kind,
            price: 1_000_000 + i64::from(instrument) * 10_000 + ((m >> 16) % 512) as i64 - 256,
            qty: 1 + ((m >> 32) % 100) as u32 * 10,
            trader: 5000 + (m >> 48) % 64,
        }
    }

    /// The 64-byte encoding.
    pub fn encode(&self) -> [u8; EVENT_LEN] {
        let mut b = [0u8; EVENT_LEN];
        b[0..8].copy_from_slice(&self.seq.to_le_bytes());
        b[8..16].copy_from_slice(&self.ts_ns.to_le_bytes());
        b[16..24].copy_from_slice(&self.order_id.to_le_bytes());
        b[24..28].copy_from_slice(&self.instrument.to_le_bytes());
        b[28] = self.side;
        b[29] = self.kind as u8;
        b[32..40].copy_from_slice(&self.price.to_le_bytes());
        b[40..44].copy_from_slice(&self.qty.to_le_bytes());
        b[48..56].copy_from_slice(&self.trader.to_le_bytes());
        b
    }

    /// Decodes the first 64 bytes of `b`; `None` if too short or the kind is unknown.
    pub fn decode(b: &[u8]) -> Option<Self> {
        let b = b.get(..EVENT_LEN)?;
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let kind = match b[29] {
            0 => Kind::New,
            1 => Kind::Cancel,
            2 => Kind::Modify,
            3 => Kind::Trade,
            _ => return None,
        };
        Some(TradeEvent {
            seq: u64_at(0),
            ts_ns: u64_at(8),
            order_id: u64_at(16),
            instrument: u32_at(24),
            side: b[28],
            kind,
            price: u64_at(32) as i64,
            qty: u32_at(40),
            trader: u64_at(48),
        })
    }
}

/// Writes the payload of record `seq` into `buf` (any length). No allocation.
#[inline]
pub fn fill(seq: u64, buf: &mut [u8]) {
    let ev = TradeEvent::for_seq(seq).encode();
    for chunk in buf.chunks_mut(EVENT_LEN) {
        chunk.copy_from_slice(&ev[..chunk.len()]);
    }
}

/// True when `payload` is exactly what [`fill`] writes for `seq` at this length.
pub fn matches(seq: u64, payload: &[u8]) -> bool {
    let ev = TradeEvent::for_seq(seq).encode();
    payload
        .chunks(EVENT_LEN)
        .all(|chunk| chunk == &ev[..chunk.len()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_decode_to_what_was_encoded() {
        for seq in [1, 2, 1000, u64::MAX / 3] {
            let ev = TradeEvent::for_seq(seq);
            assert_eq!(TradeEvent::decode(&ev.encode()), Some(ev));
        }
    }

    #[test]
    fn payload_is_a_function_of_seq_at_any_length() {
        let mut a = vec![0u8; 200];
        fill(77, &mut a);
        assert!(matches(77, &a));
        assert!(!matches(78, &a));
        let mut short = [0u8; 10];
        fill(5, &mut short);
        assert!(matches(5, &short));
    }
}
