//! MQTT 3.1.1 packets (OASIS mqtt-v3.1.1, ISO/IEC 20922) as the bridge sends and
//! receives them: the client's packets encoded to bytes, the broker's packets decoded
//! from one complete frame. Pure: no I/O, no clock, no state.
//!
//! Invariants: decoding never panics and never reads past the frame it was given;
//! topics of incoming messages are kept as bytes, so a message whose topic is not UTF-8
//! can still be acknowledged and skipped by the session instead of ending the
//! connection; every encoded packet is well formed (lengths fit their fields, or
//! encoding refuses).

use std::fmt;

/// The largest remaining length the four-byte length field can express.
pub const MAX_REMAINING: usize = 268_435_455;

/// Delivery guarantee. QoS 2 is never asked for, so a broker never sends it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum QoS {
    AtMostOnce = 0,
    AtLeastOnce = 1,
}

/// The message a broker publishes for the client when it vanishes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Will {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: QoS,
    pub retain: bool,
}

/// What CONNECT carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connect {
    pub client_id: String,
    pub keep_alive_secs: u16,
    pub clean_session: bool,
    pub will: Option<Will>,
    pub username: Option<String>,
    pub password: Option<Vec<u8>>,
}

/// One application message, either way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publish {
    /// UTF-8 when valid; kept as bytes so that a broken one can be reported.
    pub topic: Vec<u8>,
    pub payload: Vec<u8>,
    pub qos: QoS,
    pub retain: bool,
    pub dup: bool,
    /// Present exactly when `qos` is 1.
    pub packet_id: Option<u16>,
}

/// A packet from the broker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet {
    ConnAck { session_present: bool, code: u8 },
    Publish(Publish),
    PubAck(u16),
    SubAck { packet_id: u16, codes: Vec<u8> },
    UnsubAck(u16),
    PingResp,
}

/// Why bytes from the broker are not a packet the client can take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The remaining-length field is longer than four bytes.
    BadLength,
    /// A packet type a broker never sends to a client (or a reserved one).
    UnexpectedType(u8),
    /// The fixed header's flags are not the ones the type requires.
    BadFlags(u8),
    /// The body is shorter or longer than its fields say.
    BadBody(&'static str),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::BadLength => f.write_str("malformed remaining length"),
            DecodeError::UnexpectedType(kind) => {
                write!(f, "unexpected packet type {kind} from the broker")
            }
            DecodeError::BadFlags(byte) => write!(f, "invalid fixed-header flags 0x{byte:02x}"),
            DecodeError::BadBody(what) => write!(f, "malformed packet: {what}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Why a packet cannot be encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// A string or binary field is longer than 65,535 bytes.
    FieldTooLong(&'static str),
    /// The whole packet is longer than MQTT allows.
    PacketTooLong,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::FieldTooLong(field) => {
                write!(f, "the {field} is longer than 65,535 bytes")
            }
            EncodeError::PacketTooLong => f.write_str("the packet is longer than MQTT allows"),
        }
    }
}

impl std::error::Error for EncodeError {}

/// The start of a frame: its first byte, the body's length, and how many bytes the
/// fixed header took. `Ok(None)` when `bytes` does not yet hold the whole fixed header.
pub fn frame_header(bytes: &[u8]) -> Result<Option<(u8, usize, usize)>, DecodeError> {
    let Some(&first) = bytes.first() else {
        return Ok(None);
    };
    let mut length = 0usize;
    for (position, &byte) in bytes[1..].iter().enumerate().take(4) {
        length |= usize::from(byte & 0x7f) << (7 * position);
        if byte & 0x80 == 0 {
            return Ok(Some((first, length, position + 2)));
        }
    }
    if bytes.len() >= 5 {
        Err(DecodeError::BadLength)
    } else {
        Ok(None)
    }
}

/// Decodes the body of one frame whose fixed header began with `first`.
pub fn decode(first: u8, body: &[u8]) -> Result<Packet, DecodeError> {
    let kind = first >> 4;
    let flags = first & 0x0f;
    let fixed_flags = |expected: u8| {
        if flags == expected {
            Ok(())
        } else {
            Err(DecodeError::BadFlags(first))
        }
    };
    match kind {
        2 => {
            fixed_flags(0)?;
            match body {
                [acknowledge, code] if acknowledge & 0xfe == 0 => Ok(Packet::ConnAck {
                    session_present: acknowledge & 1 == 1,
                    code: *code,
                }),
                _ => Err(DecodeError::BadBody("CONNACK is not two bytes")),
            }
        }
        3 => decode_publish(first, body).map(Packet::Publish),
        4 => {
            fixed_flags(0)?;
            packet_id_only(body, "PUBACK").map(Packet::PubAck)
        }
        9 => {
            fixed_flags(0)?;
            if body.len() < 3 {
                return Err(DecodeError::BadBody("SUBACK without return codes"));
            }
            Ok(Packet::SubAck {
                packet_id: u16::from_be_bytes([body[0], body[1]]),
                codes: body[2..].to_vec(),
            })
        }
        11 => {
            fixed_flags(0)?;
            packet_id_only(body, "UNSUBACK").map(Packet::UnsubAck)
        }
        13 => {
            fixed_flags(0)?;
            if body.is_empty() {
                Ok(Packet::PingResp)
            } else {
                Err(DecodeError::BadBody("PINGRESP has a body"))
            }
        }
        other => Err(DecodeError::UnexpectedType(other)),
    }
}

fn packet_id_only(body: &[u8], what: &'static str) -> Result<u16, DecodeError> {
    match body {
        [high, low] => Ok(u16::from_be_bytes([*high, *low])),
        _ => Err(DecodeError::BadBody(match what {
            "PUBACK" => "PUBACK is not two bytes",
            _ => "UNSUBACK is not two bytes",
        })),
    }
}

/// The topic and packet identifier of a PUBLISH from the first bytes of its body (at
/// least the topic and identifier; the payload may be cut off). Lets the session
/// acknowledge and skip a message too large to hold.
pub fn publish_head(first: u8, body_start: &[u8]) -> Result<(Vec<u8>, Option<u16>), DecodeError> {
    let qos = publish_qos(first)?;
    let (topic, rest) = length_prefixed(body_start, "PUBLISH topic")?;
    let packet_id = match qos {
        QoS::AtMostOnce => None,
        QoS::AtLeastOnce => match rest {
            [high, low, ..] => Some(u16::from_be_bytes([*high, *low])),
            _ => return Err(DecodeError::BadBody("PUBLISH without packet identifier")),
        },
    };
    Ok((topic.to_vec(), packet_id))
}

fn publish_qos(first: u8) -> Result<QoS, DecodeError> {
    match (first >> 1) & 3 {
        0 => Ok(QoS::AtMostOnce),
        1 => Ok(QoS::AtLeastOnce),
        _ => Err(DecodeError::BadFlags(first)),
    }
}

fn decode_publish(first: u8, body: &[u8]) -> Result<Publish, DecodeError> {
    let qos = publish_qos(first)?;
    let (topic, mut rest) = length_prefixed(body, "PUBLISH topic")?;
    let packet_id = match qos {
        QoS::AtMostOnce => None,
        QoS::AtLeastOnce => {
            let [high, low, payload @ ..] = rest else {
                return Err(DecodeError::BadBody("PUBLISH without packet identifier"));
            };
            rest = payload;
            Some(u16::from_be_bytes([*high, *low]))
        }
    };
    Ok(Publish {
        topic: topic.to_vec(),
        payload: rest.to_vec(),
        qos,
        retain: first & 1 == 1,
        dup: first & 8 == 8,
        packet_id,
    })
}

fn length_prefixed<'a>(
    bytes: &'a [u8],
    what: &'static str,
) -> Result<(&'a [u8], &'a [u8]), DecodeError> {
    let [high, low, rest @ ..] = bytes else {
        return Err(DecodeError::BadBody(what));
    };
    let length = usize::from(u16::from_be_bytes([*high, *low]));
    if rest.len() < length {
        return Err(DecodeError::BadBody(what));
    }
    Ok(rest.split_at(length))
}

/// A packet under construction: the body, then the fixed header in front.
struct Body(Vec<u8>);

impl Body {
    fn with_capacity(capacity: usize) -> Body {
        Body(Vec::with_capacity(capacity))
    }

    fn bytes(&mut self, field: &'static str, bytes: &[u8]) -> Result<(), EncodeError> {
        let length = u16::try_from(bytes.len()).map_err(|_| EncodeError::FieldTooLong(field))?;
        self.0.extend_from_slice(&length.to_be_bytes());
        self.0.extend_from_slice(bytes);
        Ok(())
    }

    fn u16(&mut self, value: u16) {
        self.0.extend_from_slice(&value.to_be_bytes());
    }

    fn finish(self, first: u8) -> Result<Vec<u8>, EncodeError> {
        let body = self.0;
        if body.len() > MAX_REMAINING {
            return Err(EncodeError::PacketTooLong);
        }
        let mut frame = Vec::with_capacity(body.len() + 5);
        frame.push(first);
        let mut length = body.len();
        loop {
            let byte = (length % 128) as u8;
            length /= 128;
            if length == 0 {
                frame.push(byte);
                break;
            }
            frame.push(byte | 0x80);
        }
        frame.extend_from_slice(&body);
        Ok(frame)
    }
}

/// CONNECT, protocol level 4 (3.1.1).
pub fn encode_connect(connect: &Connect) -> Result<Vec<u8>, EncodeError> {
    let mut body = Body::with_capacity(64);
    body.bytes("protocol name", b"MQTT")?;
    body.0.push(4);
    let mut flags = 0u8;
    if connect.clean_session {
        flags |= 0x02;
    }
    if let Some(will) = &connect.will {
        flags |= 0x04 | ((will.qos as u8) << 3);
        if will.retain {
            flags |= 0x20;
        }
    }
    if connect.password.is_some() {
        flags |= 0x40;
    }
    if connect.username.is_some() {
        flags |= 0x80;
    }
    body.0.push(flags);
    body.u16(connect.keep_alive_secs);
    body.bytes("client id", connect.client_id.as_bytes())?;
    if let Some(will) = &connect.will {
        body.bytes("will topic", will.topic.as_bytes())?;
        body.bytes("will payload", &will.payload)?;
    }
    if let Some(username) = &connect.username {
        body.bytes("user name", username.as_bytes())?;
    }
    if let Some(password) = &connect.password {
        body.bytes("password", password)?;
    }
    body.finish(0x10)
}

/// PUBLISH; `packet_id` must be given exactly for QoS 1.
pub fn encode_publish(publish: &Publish) -> Result<Vec<u8>, EncodeError> {
    let mut body = Body::with_capacity(publish.topic.len() + publish.payload.len() + 4);
    body.bytes("topic", &publish.topic)?;
    if let Some(packet_id) = publish.packet_id {
        body.u16(packet_id);
    }
    body.0.extend_from_slice(&publish.payload);
    let first = 0x30
        | ((publish.qos as u8) << 1)
        | u8::from(publish.retain)
        | if publish.dup { 0x08 } else { 0 };
    body.finish(first)
}

/// PUBACK for a QoS 1 message received.
pub fn encode_puback(packet_id: u16) -> Vec<u8> {
    let [high, low] = packet_id.to_be_bytes();
    vec![0x40, 2, high, low]
}

/// SUBSCRIBE to filters, each with the QoS asked for.
pub fn encode_subscribe(packet_id: u16, filters: &[(String, QoS)]) -> Result<Vec<u8>, EncodeError> {
    let mut body = Body::with_capacity(2 + filters.iter().map(|(f, _)| f.len() + 3).sum::<usize>());
    body.u16(packet_id);
    for (filter, qos) in filters {
        body.bytes("topic filter", filter.as_bytes())?;
        body.0.push(*qos as u8);
    }
    body.finish(0x82)
}

/// PINGREQ, the keep-alive.
pub fn encode_pingreq() -> Vec<u8> {
    vec![0xc0, 0]
}

/// DISCONNECT: a clean goodbye (the broker then drops the will).
pub fn encode_disconnect() -> Vec<u8> {
    vec![0xe0, 0]
}

/// What a CONNACK refusal code means, as a sentence for the log.
pub fn connack_refusal(code: u8) -> &'static str {
    match code {
        1 => "the broker does not accept MQTT 3.1.1",
        2 => "the broker refused the client id",
        3 => "the broker is unavailable",
        4 => "the broker refused the user name or password",
        5 => "the broker says this client is not authorised to connect",
        _ => "the broker refused the connection with an unknown code",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Splits an encoded frame back into its first byte and body.
    #[track_caller]
    fn split(frame: &[u8]) -> (u8, &[u8]) {
        let (first, length, header) = frame_header(frame).unwrap().unwrap();
        assert_eq!(frame.len(), header + length, "frame length");
        (first, &frame[header..])
    }

    #[test]
    fn connect_matches_the_specification_example_layout() {
        let connect = Connect {
            client_id: "regd-mqtt-x".to_string(),
            keep_alive_secs: 30,
            clean_session: true,
            will: Some(Will {
                topic: "regd/x/bridge/state".to_string(),
                payload: b"offline".to_vec(),
                qos: QoS::AtLeastOnce,
                retain: true,
            }),
            username: Some("user".to_string()),
            password: Some(b"secret".to_vec()),
        };
        let frame = encode_connect(&connect).unwrap();
        let (first, body) = split(&frame);
        assert_eq!(first, 0x10);
        assert_eq!(&body[..7], b"\x00\x04MQTT\x04");
        // user name, password, will retain, will QoS 1, will, clean session
        assert_eq!(body[7], 0x80 | 0x40 | 0x20 | 0x08 | 0x04 | 0x02);
        assert_eq!(&body[8..10], &30u16.to_be_bytes());
        assert_eq!(&body[10..12], &11u16.to_be_bytes());
        assert_eq!(&body[12..23], b"regd-mqtt-x");
        assert!(body.ends_with(b"\x00\x04user\x00\x06secret"));
    }

    #[test]
    fn remaining_length_boundaries() {
        // (body length, bytes of the length field) at each boundary of the encoding
        for (length, field) in [
            (0, 1),
            (127, 1),
            (128, 2),
            (16_383, 2),
            (16_384, 3),
            (2_097_151, 3),
            (2_097_152, 4),
        ] {
            let publish = Publish {
                topic: b"t".to_vec(),
                payload: vec![b'x'; length - 3.min(length)],
                qos: QoS::AtMostOnce,
                retain: false,
                dup: false,
                packet_id: None,
            };
            let frame = encode_publish(&publish).unwrap();
            let (_, body_length, header) = frame_header(&frame).unwrap().unwrap();
            assert_eq!(header, 1 + field, "length {length}");
            assert_eq!(frame.len(), header + body_length);
        }
        assert_eq!(frame_header(&[0x30, 0x80, 0x80]).unwrap(), None);
        assert_eq!(
            frame_header(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01]),
            Err(DecodeError::BadLength)
        );
    }

    #[test]
    fn broker_packets_decode() {
        let cases: &[(&[u8], Result<Packet, DecodeError>)] = &[
            (
                &[0x20, 2, 0, 0],
                Ok(Packet::ConnAck {
                    session_present: false,
                    code: 0,
                }),
            ),
            (
                &[0x20, 2, 1, 4],
                Ok(Packet::ConnAck {
                    session_present: true,
                    code: 4,
                }),
            ),
            (
                &[0x20, 2, 2, 0],
                Err(DecodeError::BadBody("CONNACK is not two bytes")),
            ),
            (&[0x40, 2, 0x12, 0x34], Ok(Packet::PubAck(0x1234))),
            (&[0x41, 2, 0, 1], Err(DecodeError::BadFlags(0x41))),
            (
                &[0x90, 3, 0, 7, 1],
                Ok(Packet::SubAck {
                    packet_id: 7,
                    codes: vec![1],
                }),
            ),
            (
                &[0x90, 4, 0, 7, 1, 0x80],
                Ok(Packet::SubAck {
                    packet_id: 7,
                    codes: vec![1, 0x80],
                }),
            ),
            (&[0xb0, 2, 0, 9], Ok(Packet::UnsubAck(9))),
            (&[0xd0, 0], Ok(Packet::PingResp)),
            (
                &[0xd0, 1, 0],
                Err(DecodeError::BadBody("PINGRESP has a body")),
            ),
            (&[0x10, 0], Err(DecodeError::UnexpectedType(1))),
            (
                &[0x36, 5, 0, 1, b't', 0, 1],
                Err(DecodeError::BadFlags(0x36)),
            ),
            (
                &[0x32, 3, 0, 1, b't'],
                Err(DecodeError::BadBody("PUBLISH without packet identifier")),
            ),
            (
                &[0x30, 3, 0, 5, b't'],
                Err(DecodeError::BadBody("PUBLISH topic")),
            ),
        ];
        for (frame, expected) in cases {
            let (first, body) = split(frame);
            assert_eq!(&decode(first, body), expected, "{frame:02x?}");
        }
    }

    #[test]
    fn publish_with_an_invalid_utf8_topic_still_decodes() {
        let frame = [0x33, 8, 0, 3, b'a', 0xff, b'b', 0, 42, b'!'];
        let (first, body) = split(&frame);
        let Packet::Publish(publish) = decode(first, body).unwrap() else {
            panic!("not a publish");
        };
        assert_eq!(publish.topic, b"a\xffb");
        assert_eq!(publish.packet_id, Some(42));
        assert!(publish.retain);
        assert_eq!(publish.payload, b"!");
        assert_eq!(
            publish_head(first, &body[..7]).unwrap(),
            (b"a\xffb".to_vec(), Some(42))
        );
    }

    #[test]
    fn fields_longer_than_the_format_allows_are_refused() {
        let publish = Publish {
            topic: vec![b'a'; 65_536],
            payload: Vec::new(),
            qos: QoS::AtMostOnce,
            retain: false,
            dup: false,
            packet_id: None,
        };
        assert_eq!(
            encode_publish(&publish),
            Err(EncodeError::FieldTooLong("topic"))
        );
    }

    fn any_publish() -> impl Strategy<Value = Publish> {
        (
            proptest::collection::vec(any::<u8>(), 0..40),
            proptest::collection::vec(any::<u8>(), 0..300),
            any::<bool>(),
            any::<bool>(),
            proptest::option::of(any::<u16>()),
        )
            .prop_map(|(topic, payload, retain, dup, packet_id)| Publish {
                topic,
                payload,
                qos: if packet_id.is_some() {
                    QoS::AtLeastOnce
                } else {
                    QoS::AtMostOnce
                },
                retain,
                dup,
                packet_id,
            })
    }

    proptest! {
        #[test]
        fn publish_round_trips(publish in any_publish()) {
            let frame = encode_publish(&publish).unwrap();
            let (first, length, header) = frame_header(&frame).unwrap().unwrap();
            prop_assert_eq!(frame.len(), header + length);
            prop_assert_eq!(decode(first, &frame[header..]), Ok(Packet::Publish(publish)));
        }

        #[test]
        fn arbitrary_bytes_never_panic(first in any::<u8>(), body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(first, &body);
            let _ = publish_head(first, &body);
            let mut frame = vec![first];
            frame.extend_from_slice(&body);
            let _ = frame_header(&frame);
        }
    }
}
