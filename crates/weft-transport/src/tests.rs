use super::*;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use weft_wire::{pack_message, CHANNEL_CLOSE, CHANNEL_DATA};

fn feed(fb: &mut FrameBuf, mut data: &[u8], step: usize) {
    while !data.is_empty() {
        let room = fb.spare();
        let n = room.len().min(step).min(data.len());
        room[..n].copy_from_slice(&data[..n]);
        fb.commit(n);
        data = &data[n..];
    }
}

fn frames(fb: &mut FrameBuf) -> Vec<(u8, u32, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some((h, r)) = fb.next_frame().unwrap() {
        out.push((h.msgcode, h.channel_id, fb.slice(r).to_vec()));
    }
    out
}

#[test]
fn frames_split_at_every_byte() {
    let mut stream = pack_message(CHANNEL_DATA, 3, b"hello").unwrap();
    stream.extend(pack_message(CHANNEL_CLOSE, 3, b"").unwrap());
    stream.extend(pack_message(CHANNEL_DATA, 5, &[7u8; 1000]).unwrap());
    for step in [1, 2, 7, 9, 10, 4096] {
        let mut fb = FrameBuf::new(1 << 20);
        let mut got = Vec::new();
        let mut rest = &stream[..];
        while !rest.is_empty() {
            let n = step.min(rest.len());
            feed(&mut fb, &rest[..n], n);
            rest = &rest[n..];
            got.extend(frames(&mut fb));
        }
        assert_eq!(
            got,
            vec![
                (CHANNEL_DATA, 3, b"hello".to_vec()),
                (CHANNEL_CLOSE, 3, vec![]),
                (CHANNEL_DATA, 5, vec![7u8; 1000]),
            ],
            "step {step}"
        );
        assert_eq!(fb.buffered(), 0);
        assert_eq!(fb.incomplete(), None);
    }
}

#[test]
fn incomplete_frame_is_reported() {
    let mut fb = FrameBuf::new(1 << 20);
    let m = pack_message(CHANNEL_DATA, 1, &[1u8; 100]).unwrap();
    feed(&mut fb, &m[..50], 50);
    assert!(fb.next_frame().unwrap().is_none());
    assert_eq!(fb.incomplete(), Some((109, 50)));
    let mut fb = FrameBuf::new(1 << 20);
    feed(&mut fb, &m[..4], 4);
    assert_eq!(fb.incomplete(), Some((HEADER_SIZE, 4)));
}

#[test]
fn bad_headers_are_errors_and_stay() {
    for bad in [
        &b"\x08\x00\x00\x00\x01\x00\x00\x00\x00"[..],
        b"\xff\x00\x00\x00\x01\x00\x00\x00\x00",
        b"\x04\x80\x00\x00\x01\x00\x00\x00\x00",
        b"\x04\x00\x00\x00\x01\xff\xff\xff\xff",
        b"\x04\x00\x00\x00\x01\x00\x00\x10\x01", // 4097 > max_frame
    ] {
        let mut fb = FrameBuf::new(4096);
        let mut stream = pack_message(CHANNEL_DATA, 1, b"ok").unwrap();
        stream.extend_from_slice(bad);
        feed(&mut fb, &stream, stream.len());
        assert!(fb.next_frame().unwrap().is_some());
        assert!(fb.next_frame().is_err());
        assert!(fb.next_frame().is_err(), "the error repeats");
    }
}

#[test]
fn growth_is_bounded_by_what_arrived() {
    // a header announcing 512 MiB, followed by 10 bytes
    let mut fb = FrameBuf::new(1 << 30);
    let mut m = vec![CHANNEL_DATA, 0, 0, 0, 1];
    m.extend_from_slice(&(512u32 << 20).to_be_bytes());
    m.extend_from_slice(&[0u8; 10]);
    feed(&mut fb, &m, m.len());
    assert!(fb.next_frame().unwrap().is_none());
    let room = fb.spare().len();
    assert!(room <= GROW_CHUNK, "{room}");
    assert!(fb.buf.len() <= m.len() + GROW_CHUNK);
}

#[test]
fn large_frame_arrives_in_pieces() {
    let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let m = pack_message(CHANNEL_DATA, 9, &payload).unwrap();
    let mut fb = FrameBuf::new(1 << 30);
    feed(&mut fb, &m, 65536);
    let (h, r) = fb.next_frame().unwrap().unwrap();
    assert_eq!(h.length as usize, payload.len());
    assert_eq!(fb.slice(r), &payload[..]);
    // an empty, huge buffer shrinks again
    let _ = fb.spare();
    feed(&mut fb, &pack_message(CHANNEL_CLOSE, 9, b"").unwrap(), 100);
    assert_eq!(frames(&mut fb), vec![(CHANNEL_CLOSE, 9, vec![])]);
}

#[test]
fn take_raw_bytes() {
    let mut fb = FrameBuf::new(100);
    feed(&mut fb, b"abcdef", 6);
    assert!(fb.take(7).is_none());
    let r = fb.take(4).unwrap();
    assert_eq!(fb.slice(r), b"abcd");
    assert_eq!(fb.buffered(), 2);
}

#[test]
fn reader_and_writer_over_a_socket_pair() {
    let (a, mut b) = UnixStream::pair().unwrap();
    let payload = vec![42u8; 2_000_000];
    let header = weft_wire::pack_header(CHANNEL_DATA, 7, payload.len()).unwrap();
    let writer = std::thread::spawn(move || {
        let parts: [&[u8]; 2] = [&header, &payload];
        let total = HEADER_SIZE + payload.len();
        let mut done = 0;
        while done < total {
            done += write_from(a.as_raw_fd(), &parts, done).unwrap();
        }
        assert_eq!(write_from(a.as_raw_fd(), &parts, done).unwrap(), 0);
        drop(a);
    });
    let mut r = FdReader::new(b.as_raw_fd(), 1 << 30);
    let got = loop {
        if let Some((h, range)) = r.buf.next_frame().unwrap() {
            assert_eq!((h.msgcode, h.channel_id), (CHANNEL_DATA, 7));
            break r.buf.slice(range).to_vec();
        }
        assert!(r.fill().unwrap() > 0);
    };
    assert_eq!(got, vec![42u8; 2_000_000]);
    writer.join().unwrap();
    assert_eq!(r.fill().unwrap(), 0, "EOF after the writer closed");
    b.write_all(b"x").ok();
    let mut sink = Vec::new();
    let _ = b.read_to_end(&mut sink);
}

#[test]
fn nonblocking_descriptors_wait_instead_of_failing() {
    let (a, b) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    b.set_nonblocking(true).unwrap();
    let big = vec![1u8; 4_000_000]; // more than the socket buffer holds
    let reader = std::thread::spawn(move || {
        let mut r = FdReader::new(b.as_raw_fd(), 1 << 30);
        let mut total = 0;
        loop {
            match r.fill().unwrap() {
                0 => break,
                n => total += n,
            }
            let _ = r.buf.take(r.buf.buffered());
        }
        total
    });
    let mut done = 0;
    while done < big.len() {
        done += write_from(a.as_raw_fd(), &[&big], done).unwrap();
    }
    drop(a);
    assert_eq!(reader.join().unwrap(), big.len());
}

#[test]
fn try_write_never_blocks_a_blocking_socket() {
    let (a, b) = UnixStream::pair().unwrap(); // both blocking
    let big = vec![3u8; 8_000_000]; // more than the socket buffer holds
    let mut done = 0;
    loop {
        match try_write_from(a.as_raw_fd(), &[&big], done, true) {
            Ok(n) => done += n,
            Err(e) => {
                assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
                break;
            }
        }
    }
    assert!(done > 0 && done < big.len());
    assert!(!wait_writable(a.as_raw_fd(), Some(std::time::Duration::from_millis(10))).unwrap());
    drop(b);
    // the peer is gone: writable (to report the error), and the write fails
    assert!(wait_writable(a.as_raw_fd(), Some(std::time::Duration::from_millis(1000))).unwrap());
    assert!(try_write_from(a.as_raw_fd(), &[&big], done, true).is_err());
}
