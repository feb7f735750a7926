//! Look-ups of some elements of a set, one request each, many to a
//! datagram: the cost grows with the elements asked of, never with the set.
#![forbid(unsafe_code)]

use std::io;
use std::net::IpAddr;

use super::*;

impl Lookup {
    /// Which of `addrs` the set holds: one lookup each, `BATCH` requests
    /// to a datagram (the kernel answers each message of it in turn, an
    /// element or ENOENT, then the ACK), so the cost grows with `addrs`,
    /// never with the set.
    pub fn holds(&mut self, set: &str, addrs: &[IpAddr]) -> io::Result<Vec<bool>> {
        Ok(self
            .lefts(set, addrs)?
            .into_iter()
            .map(|l| l.is_some())
            .collect())
    }

    /// `get` for each of `addrs`, `BATCH` lookups to a datagram as `holds`.
    pub fn lefts(&mut self, set: &str, addrs: &[IpAddr]) -> io::Result<Vec<Option<Option<u64>>>> {
        Ok(self
            .timed_lefts(set, addrs)?
            .into_iter()
            .map(|x| x.map(|(_, left)| left))
            .collect())
    }

    /// `lefts`, each with its element's timeout (ms; `None`: none).
    pub(super) fn timed_lefts(
        &mut self,
        set: &str,
        addrs: &[IpAddr],
    ) -> io::Result<Vec<Option<Timer>>> {
        const BATCH: usize = 256;
        let mut out = vec![None; addrs.len()];
        for (c, chunk) in addrs.chunks(BATCH).enumerate() {
            let mut b = Vec::new();
            let mut seqs = std::collections::HashMap::with_capacity(chunk.len());
            for (i, a) in chunk.iter().enumerate() {
                let one = ListAttribute::Element(vec![SetElementAttribute::Key(
                    DataAttribute::Value(key_of(*a)),
                )]);
                let mut m = self.getsetelem_msg(set, Some(vec![one]), NLM_F_REQUEST | NLM_F_ACK);
                self.seq = self.seq.wrapping_add(1).max(1);
                m.header.sequence_number = self.seq;
                m.finalize();
                let at = b.len();
                b.resize(at + (m.header.length as usize).next_multiple_of(4), 0);
                m.serialize(&mut b[at..]);
                seqs.insert(self.seq, c * BATCH + i);
            }
            self.sock.send(&b, 0)?;
            let mut left = chunk.len();
            // Bounded: every request gets one answer and one ACK or error.
            for _ in 0..(4 * BATCH) {
                if left == 0 {
                    break;
                }
                let Some(n) = recv(&self.sock, &mut self.buf, 0)? else {
                    continue;
                };
                for r in raw_messages(&self.buf[..n]) {
                    let Some(&i) = seqs.get(&msg_seq(r)) else {
                        continue;
                    };
                    match msg_type(r) {
                        2 => {
                            let code = error_code(r);
                            if code != 0 && -code != libc::ENOENT {
                                return Err(io::Error::from_raw_os_error(-code));
                            }
                            left -= 1;
                        }
                        NFT_MSG_NEWSETELEM => {
                            out[i] = raw_setelem(r).and_then(|(_, _, _, e)| {
                                e.iter().find(|x| x.0 == addrs[i]).map(|x| (x.1, x.2))
                            });
                        }
                        _ => {}
                    }
                }
            }
            if left > 0 {
                return Err(io::Error::other(format!(
                    "{left} of {} lookups unanswered",
                    chunk.len()
                )));
            }
        }
        Ok(out)
    }

    /// The element's time left in milliseconds (`Some(None)` for one
    /// without a timeout), or `None` when the set does not hold it.
    pub fn get(&mut self, set: &str, addr: IpAddr) -> io::Result<Option<Option<u64>>> {
        let one = ListAttribute::Element(vec![SetElementAttribute::Key(DataAttribute::Value(
            key_of(addr),
        ))]);
        match self.getsetelem(set, Some(vec![one]), NLM_F_REQUEST | NLM_F_ACK) {
            Ok(answer) => Ok(answer
                .iter()
                .filter(|r| msg_type(r) == NFT_MSG_NEWSETELEM)
                .filter_map(|r| raw_setelem(r))
                .flat_map(|(_, _, _, e)| e)
                .find(|(a, _, _)| *a == addr)
                .map(|(_, _, left)| left)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
