//! Binary encoding of event blocks for the write-ahead log.
//!
//! A block is a batch of events with consecutive sequence numbers. Strings are interned per
//! block (names and unit keys repeat a lot), integers are LEB128 varints, times are
//! zig-zag deltas from the previous event. The format is private to the log: history is
//! Parquet.

use rustc_hash::FxHashMap as HashMap;

use sequin_core::{Event, MessageKind, Text, Value};

/// Appends an unsigned varint.
pub fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

struct Writer<'a> {
    out: &'a mut Vec<u8>,
    strings: HashMap<&'a str, u64>,
    /// Strings written so far: the reader numbers every new string, also the ones written
    /// by [`Writer::unshared_str`], which this table does not hold.
    written: u64,
}

impl<'a> Writer<'a> {
    /// Writes a string reference: 0 = none, 2k+1 = new string (then len + bytes), 2k+2 = back
    /// reference to interned string k.
    fn opt_str(&mut self, s: Option<&'a str>) {
        match s {
            None => put_uvarint(self.out, 0),
            Some(s) => match self.strings.get(s) {
                Some(&k) => put_uvarint(self.out, 2 * k + 2),
                None => {
                    self.strings.insert(s, self.written);
                    self.new_str(s);
                }
            },
        }
    }

    /// Writes a string that is not expected to repeat (a message id) as new, without
    /// looking it up or remembering it: same format, the reader cannot tell.
    fn unshared_str(&mut self, s: Option<&str>) {
        match s {
            None => put_uvarint(self.out, 0),
            Some(s) => self.new_str(s),
        }
    }

    fn new_str(&mut self, s: &str) {
        put_uvarint(self.out, 2 * self.written + 1);
        put_uvarint(self.out, s.len() as u64);
        self.out.extend_from_slice(s.as_bytes());
        self.written += 1;
    }

    fn props(&mut self, props: &'a [(Text, Value)]) {
        put_uvarint(self.out, props.len() as u64);
        for (k, v) in props {
            self.opt_str(Some(k));
            match v {
                Value::Bool(b) => self.out.push(if *b { 1 } else { 0 }),
                Value::Int(i) => {
                    self.out.push(2);
                    put_uvarint(self.out, zigzag(*i));
                }
                Value::Float(f) => {
                    self.out.push(3);
                    self.out.extend_from_slice(&f.to_le_bytes());
                }
                Value::Str(s) => {
                    self.out.push(4);
                    self.opt_str(Some(s));
                }
                Value::Json(s) => {
                    self.out.push(5);
                    self.opt_str(Some(s));
                }
            }
        }
    }
}

/// Encodes `events` into `out`.
pub fn encode_events<'a, I>(events: I, out: &mut Vec<u8>)
where
    I: IntoIterator<Item = &'a Event>,
    I::IntoIter: Clone,
{
    let events = events.into_iter();
    let mut w = Writer {
        out,
        strings: HashMap::default(),
        written: 0,
    };
    put_uvarint(w.out, events.clone().count() as u64);
    let mut prev_time = 0i64;
    for e in events {
        w.out.push(e.kind as u8);
        w.opt_str(Some(&e.name));
        put_uvarint(w.out, zigzag(e.time.wrapping_sub(prev_time)));
        prev_time = e.time;
        w.opt_str(e.user_id.as_deref());
        w.opt_str(e.anonymous_id.as_deref());
        w.opt_str(e.previous_id.as_deref());
        w.opt_str(e.session_id.as_deref());
        w.opt_str(e.conversation_id.as_deref());
        w.unshared_str(e.message_id.as_deref());
        w.props(&e.properties);
        w.props(&e.context);
        w.props(&e.traits);
    }
}

/// Why a block could not be decoded.
#[derive(Debug)]
pub struct DecodeError;

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    strings: Vec<&'a str>,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.pos).ok_or(DecodeError)?;
        self.pos += 1;
        Ok(b)
    }

    fn uvarint(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
            shift += 7;
            if shift > 63 {
                return Err(DecodeError);
            }
        }
    }

    fn opt_str(&mut self) -> Result<Option<&'a str>, DecodeError> {
        let tag = self.uvarint()?;
        if tag == 0 {
            return Ok(None);
        }
        if tag % 2 == 1 {
            let len = self.uvarint()? as usize;
            let end = self.pos.checked_add(len).ok_or(DecodeError)?;
            let bytes = self.buf.get(self.pos..end).ok_or(DecodeError)?;
            self.pos = end;
            let s = std::str::from_utf8(bytes).map_err(|_| DecodeError)?;
            self.strings.push(s);
            Ok(Some(s))
        } else {
            let k = ((tag - 2) / 2) as usize;
            self.strings.get(k).copied().map(Some).ok_or(DecodeError)
        }
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        self.opt_str()?.map(str::to_string).ok_or(DecodeError)
    }

    fn text(&mut self) -> Result<Text, DecodeError> {
        self.opt_str()?.map(Text::from).ok_or(DecodeError)
    }

    fn props(&mut self) -> Result<Vec<(Text, Value)>, DecodeError> {
        let n = self.uvarint()? as usize;
        let mut out = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            let k = self.text()?;
            let v = match self.byte()? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                2 => Value::Int(unzigzag(self.uvarint()?)),
                3 => {
                    let end = self.pos + 8;
                    let b = self.buf.get(self.pos..end).ok_or(DecodeError)?;
                    self.pos = end;
                    Value::Float(f64::from_le_bytes(b.try_into().map_err(|_| DecodeError)?))
                }
                4 => Value::Str(self.text()?),
                5 => Value::Json(self.string()?),
                _ => return Err(DecodeError),
            };
            out.push((k, v));
        }
        Ok(out)
    }
}

/// Decodes a block written by [`encode_events`].
pub fn decode_events(buf: &[u8]) -> Result<Vec<Event>, DecodeError> {
    let mut r = Reader {
        buf,
        pos: 0,
        strings: Vec::new(),
    };
    let n = r.uvarint()? as usize;
    let mut out = Vec::with_capacity(n.min(1 << 20));
    let mut prev_time = 0i64;
    for _ in 0..n {
        let kind = MessageKind::from_u8(r.byte()?);
        let name = r.string()?;
        let time = prev_time.wrapping_add(unzigzag(r.uvarint()?));
        prev_time = time;
        let user_id = r.opt_str()?.map(str::to_string);
        let anonymous_id = r.opt_str()?.map(str::to_string);
        let previous_id = r.opt_str()?.map(str::to_string);
        let session_id = r.opt_str()?.map(str::to_string);
        let conversation_id = r.opt_str()?.map(str::to_string);
        let message_id = r.opt_str()?.map(str::to_string);
        let properties = r.props()?;
        let context = r.props()?;
        let traits = r.props()?;
        out.push(Event {
            kind,
            name: name.into(),
            time,
            user_id: user_id.map(Text::from),
            anonymous_id: anonymous_id.map(Text::from),
            previous_id: previous_id.map(Text::from),
            session_id: session_id.map(Text::from),
            conversation_id: conversation_id.map(Text::from),
            message_id: message_id.map(Text::from),
            properties,
            context,
            traits,
        });
    }
    if r.pos != buf.len() {
        return Err(DecodeError);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_field() {
        let mut a = Event::new("u1", 1_000_000, "purchase");
        a.properties = vec![
            ("amount".into(), Value::Float(9.5)),
            ("n".into(), Value::Int(-3)),
            ("ok".into(), Value::Bool(true)),
        ];
        a.context = vec![("os.name".into(), Value::Str("iOS".into()))];
        a.message_id = Some("m1".into());
        let mut b = Event::new("u1", 500, "purchase");
        b.kind = MessageKind::Alias;
        b.previous_id = Some("a".into());
        b.traits = vec![("tags".into(), Value::Json("[1,2]".into()))];
        // Repeats strings written after a message id (which the table leaves out), and has
        // a message id equal to a shared string.
        let mut c = a.clone();
        c.message_id = Some("iOS".into());
        let events = vec![a, b, c];
        let mut buf = Vec::new();
        encode_events(&events, &mut buf);
        assert_eq!(decode_events(&buf).unwrap(), events);
        assert!(decode_events(&buf[..buf.len() - 1]).is_err());
    }
}
