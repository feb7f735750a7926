//! What root and the listener say to each other on their socketpair:
//! one JSON object a line. Root sends the setup once; the listener says
//! it is ready, what it admitted, and sums of what it refused. Root reads
//! the listener's lines as it reads a datagram: bounded, and checked
//! again before anything is done.
#![forbid(unsafe_code)]

use std::net::IpAddr;

use super::{Admitted, Refused, Service};

/// Root to listener, once.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Setup {
    pub services: Vec<Service>,
    /// Stamps before this are refused (see `Checker::new`).
    pub not_before: u64,
    /// Root's replay record, live nonces (key id, nonce, until): a new
    /// listener refuses what an earlier one (or daemon) took.
    #[serde(default)]
    pub record: Vec<crate::spa::Seen>,
}

/// Listener to root.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Msg {
    /// In its sandbox, reading.
    Ready {
        sandbox: String,
        uid: u32,
    },
    Admitted(Admitted),
    /// Datagrams refused since the last such line, by reason, and the
    /// last one's sender and reason.
    Refused {
        counts: Vec<(Refused, u64)>,
        last: Refused,
        from: IpAddr,
    },
}

/// The longest line either side takes.
pub const LINE_MAX: usize = 64 * 1024;

/// A line, to be written as it is.
pub fn line<T: serde::Serialize>(m: &T) -> Vec<u8> {
    let mut v = serde_json::to_vec(m).expect("plain data serializes");
    v.push(b'\n');
    v
}

/// Complete lines taken out of `buf`, parsed; `Err` for one that is not a
/// message or too long (the listener is then not to be trusted).
pub fn take_lines(buf: &mut Vec<u8>) -> Result<Vec<Msg>, String> {
    let mut out = Vec::new();
    while let Some(i) = buf.iter().position(|&b| b == b'\n') {
        let l: Vec<u8> = buf.drain(..=i).collect();
        out.push(
            serde_json::from_slice(&l[..i])
                .map_err(|e| format!("the listener sent something else than a message: {e}"))?,
        );
    }
    if buf.len() > LINE_MAX {
        return Err(format!("the listener sent a line over {LINE_MAX} bytes"));
    }
    Ok(out)
}

/// "1523 refused (1500 bad signature, 23 malformed)".
pub fn refused_words(counts: &[(Refused, u64)]) -> String {
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    let parts: Vec<String> = counts
        .iter()
        .map(|(r, n)| format!("{n} {}", r.words()))
        .collect();
    format!("{total} refused ({})", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_come_out_whole_and_a_bad_or_long_one_is_an_error() {
        let m = Msg::Refused {
            counts: vec![(Refused::Signature, 3)],
            last: Refused::Signature,
            from: "198.18.0.9".parse().unwrap(),
        };
        let mut buf = line(&m);
        let half = line(&m);
        buf.extend_from_slice(&half[..10]);
        assert_eq!(take_lines(&mut buf).unwrap(), vec![m]);
        assert_eq!(buf.len(), 10);
        let mut bad = b"{\"Ready\":1}\n".to_vec();
        assert!(take_lines(&mut bad).is_err());
        let mut long = vec![b'x'; LINE_MAX + 1];
        assert!(take_lines(&mut long).is_err());
        // Up to the bound, a line still coming is waited for.
        let mut most = vec![b'x'; LINE_MAX];
        assert_eq!(take_lines(&mut most), Ok(vec![]));
        // A long message (many reasons) is one line.
        let big = Msg::Ready {
            sandbox: "s".repeat(4000),
            uid: 1,
        };
        assert_eq!(take_lines(&mut line(&big)).unwrap(), vec![big]);
    }
}
