//! Changes to sets in transactions of pfknock's own: elements added or
//! deleted in batches, and a set emptied by the kernel's flush with each
//! element it removed told back.

use super::*;

/// Add elements to (`add`) or delete them from a set of table inet
/// `table`, in transactions of our own: the kernel then names the
/// committer `pfknock` (NEWGEN), and the daemon leaves the change to the
/// command's own log line. Elements may carry a timeout and the time
/// left, in milliseconds. One transaction per 1,000 elements (a netlink
/// datagram must fit the socket's send buffer).
pub fn change_elements(
    table: &str,
    set: &str,
    add: bool,
    elems: &[(IpAddr, Option<(u64, u64)>)],
) -> io::Result<()> {
    let s = sock()?;
    let mut buf = vec![0u8; 1 << 16];
    let mut seq = 1u32;
    for chunk in elems.chunks(1000) {
        let (inner, flags) = element_message(table, set, add, chunk);
        s.send(&transaction(inner, flags, seq), 0)?;
        wait_ack(&s, &mut buf, seq + 1)?;
        seq += 3;
    }
    Ok(())
}

/// One transaction of one message: NFNL_MSG_BATCH_BEGIN (`seq`), `inner`
/// with `flags` (`seq + 1`), NFNL_MSG_BATCH_END (`seq + 2`). BEGIN and
/// END carry the subsystem (NFNL_SUBSYS_NFTABLES) in res_id.
fn transaction(inner: NfTablesMessage, flags: u16, seq: u32) -> Vec<u8> {
    use netlink_packet_netfilter::none::ControlMessage;
    let unspec = NetfilterProtoFamily::Unspec;
    let (begin, end) = (ControlMessage::BatchBegin, ControlMessage::BatchEnd);
    let mut batch = Vec::new();
    push_message(&mut batch, begin.into(), unspec, 10, NLM_F_REQUEST, seq);
    let inet = NetfilterProtoFamily::Inet;
    push_message(&mut batch, inner.into(), inet, 0, flags, seq + 1);
    push_message(&mut batch, end.into(), unspec, 10, NLM_F_REQUEST, seq + 2);
    batch
}

/// The receive buffer of a flush's socket, where root may have it: the
/// kernel tells back every element removed before it acknowledges (about
/// 100 bytes each, in datagrams of many), all during our send.
const FLUSH_RCVBUF: usize = 512 << 20;

/// Empty a set of table inet `table` in one transaction of our own: a
/// DELSETELEM without elements, which is the kernel's flush of the set
/// (nf_tables_delsetelem, nft_set_flush), with NLM_F_ECHO, so that the
/// notification of each element removed comes to this socket too
/// (nlmsg_notify). Returns the elements the kernel told back and whether
/// that was all of them: a set too large for the socket's buffer (a
/// flush of millions) overflows it, and then the flush is done but not
/// every element is told. An error: nothing was removed.
pub fn flush_set(table: &str, set: &str) -> io::Result<(Vec<CountedElement>, bool)> {
    use netlink_packet_core::NLM_F_ECHO;
    let s = sock()?;
    let _ = rustix::net::sockopt::set_socket_recv_buffer_size_force(&s, FLUSH_RCVBUF);
    // An acknowledgement dropped with the overflow must not leave us
    // waiting for good.
    rustix::net::sockopt::set_socket_timeout(
        &s,
        rustix::net::sockopt::Timeout::Recv,
        Some(std::time::Duration::from_secs(10)),
    )?;
    let msg = SetElementMessage {
        attributes: vec![
            SetElementList::Table(table.to_owned()),
            SetElementList::Set(set.to_owned()),
        ],
    };
    let inner = NfTablesMessage::DeleteSetElement(msg);
    let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_ECHO;
    s.send(&transaction(inner, flags, 1), 0)?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut got, mut whole) = (Vec::new(), true);
    // Bounded: 16M elements at most, many to a datagram.
    for _ in 0..(1 << 25) {
        // The echoes come as the group's notifications do (the group
        // named in their address), to this socket alone: it is in no
        // group.
        let n = match recv(&s, &mut buf, 1 << (NFNLGRP_NFTABLES - 1)) {
            Ok(Some(n)) => n,
            Ok(None) => continue,
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                whole = false;
                continue;
            }
            Err(e) if !whole && e.kind() == io::ErrorKind::WouldBlock => return Ok((got, false)),
            Err(e) => return Err(e),
        };
        for r in raw_messages(&buf[..n]) {
            match msg_type(r) {
                2 if msg_seq(r) == 2 => {
                    let code = error_code(r);
                    if code != 0 {
                        return Err(io::Error::from_raw_os_error(-code));
                    }
                    return Ok((got, whole));
                }
                NFT_MSG_DELSETELEM => {
                    if let Some((_, tb, st, e)) = raw_setelem_counted(r)
                        && tb == table
                        && st == set
                    {
                        got.extend(e);
                    }
                }
                _ => {}
            }
        }
    }
    Ok((got, false))
}

/// One message, serialized onto `batch`.
fn push_message(
    batch: &mut Vec<u8>,
    inner: netlink_packet_netfilter::NetfilterMessageInner,
    family: NetfilterProtoFamily,
    res_id: u16,
    flags: u16,
    seq: u32,
) {
    let mut h = NetlinkHeader::default();
    h.flags = flags;
    h.sequence_number = seq;
    let mut m = NetlinkMessage::new(
        h,
        NetlinkPayload::from(NetfilterMessage::new(
            NetfilterHeader::new(family, 0, res_id),
            inner,
        )),
    );
    m.finalize();
    let mut b = vec![0u8; m.header.length as usize];
    m.serialize(&mut b[..]);
    batch.extend(b);
}

/// NEWSETELEM (with NLM_F_CREATE) or DELSETELEM for `elems`, each with
/// its timeout and time left where it has them.
fn element_message(
    table: &str,
    set: &str,
    add: bool,
    elems: &[(IpAddr, Option<(u64, u64)>)],
) -> (NfTablesMessage, u16) {
    use netlink_packet_core::NLM_F_CREATE;
    let list = elems
        .iter()
        .map(|(addr, times)| {
            let mut e = vec![SetElementAttribute::Key(DataAttribute::Value(key_of(
                *addr,
            )))];
            if let Some((timeout, left)) = times {
                e.push(SetElementAttribute::Timeout(*timeout));
                e.push(SetElementAttribute::Expiration(*left));
            }
            ListAttribute::Element(e)
        })
        .collect();
    let msg = SetElementMessage {
        attributes: vec![
            SetElementList::Table(table.to_owned()),
            SetElementList::Set(set.to_owned()),
            SetElementList::Elements(list),
        ],
    };
    if add {
        (
            NfTablesMessage::NewSetElement(msg),
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE,
        )
    } else {
        (
            NfTablesMessage::DeleteSetElement(msg),
            NLM_F_REQUEST | NLM_F_ACK,
        )
    }
}

/// Wait for the ACK of message `want` (or the first error) on `s`: it
/// ends the transaction.
fn wait_ack(s: &Socket, buf: &mut [u8], want: u32) -> io::Result<()> {
    for _ in 0..64 {
        let Some(n) = recv(s, buf, 0)? else {
            continue;
        };
        for r in raw_messages(&buf[..n]) {
            if msg_type(r) == 2 {
                let code = r
                    .get(16..20)
                    .map_or(0, |e| i32::from_ne_bytes([e[0], e[1], e[2], e[3]]));
                if code != 0 {
                    return Err(io::Error::from_raw_os_error(-code));
                }
                if msg_seq(r) == want {
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}
