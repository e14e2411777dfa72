//! A small binary encoding for checkpoints of live state: LEB128 varints, zig-zag for
//! signed values, length-prefixed strings. Hand-written because the state is the product's
//! core and its layout should stay under our control (and compact: it is also the measure
//! of bytes per user).

use sequin_core::Value;

/// Appends encoded values.
#[derive(Default)]
pub struct Enc {
    /// The bytes so far.
    pub buf: Vec<u8>,
}

impl Enc {
    /// An unsigned integer.
    pub fn u(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }
    /// A signed integer.
    pub fn i(&mut self, v: i64) {
        self.u(((v << 1) ^ (v >> 63)) as u64);
    }
    /// A float, bit for bit.
    pub fn f(&mut self, v: f64) {
        self.buf.extend_from_slice(&v.to_bits().to_le_bytes());
    }
    /// A boolean.
    pub fn b(&mut self, v: bool) {
        self.buf.push(v as u8);
    }
    /// A string.
    pub fn s(&mut self, v: &str) {
        self.u(v.len() as u64);
        self.buf.extend_from_slice(v.as_bytes());
    }
    /// An optional signed integer.
    pub fn oi(&mut self, v: Option<i64>) {
        match v {
            None => self.b(false),
            Some(v) => {
                self.b(true);
                self.i(v);
            }
        }
    }
    /// An optional string.
    pub fn os(&mut self, v: Option<&str>) {
        match v {
            None => self.b(false),
            Some(v) => {
                self.b(true);
                self.s(v);
            }
        }
    }
    /// A property value.
    pub fn value(&mut self, v: &Value) {
        match v {
            Value::Bool(b) => {
                self.u(0);
                self.b(*b);
            }
            Value::Int(i) => {
                self.u(1);
                self.i(*i);
            }
            Value::Float(f) => {
                self.u(2);
                self.f(*f);
            }
            Value::Str(s) => {
                self.u(3);
                self.s(s);
            }
            Value::Json(s) => {
                self.u(4);
                self.s(s);
            }
        }
    }
}

/// Why a checkpoint could not be read.
#[derive(Debug, thiserror::Error)]
#[error("checkpoint is corrupt or from another version: {0}")]
pub struct DecodeError(pub &'static str);

/// Reads encoded values.
pub struct Dec<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Dec<'a> {
    /// Reads from `buf`.
    pub fn new(buf: &'a [u8]) -> Dec<'a> {
        Dec { buf, pos: 0 }
    }
    /// Everything read?
    pub fn done(&self) -> bool {
        self.pos == self.buf.len()
    }
    fn byte(&mut self) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.pos).ok_or(DecodeError("truncated"))?;
        self.pos += 1;
        Ok(b)
    }
    /// An unsigned integer.
    pub fn u(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= ((b & 0x7f) as u64) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(DecodeError("varint too long"))
    }
    /// A length or count, bounded by what is left (no huge allocations from bad input).
    pub fn count(&mut self) -> Result<usize, DecodeError> {
        let n = self.u()? as usize;
        if n > self.buf.len() - self.pos + 1 {
            return Err(DecodeError("length beyond the end"));
        }
        Ok(n)
    }
    /// A signed integer.
    pub fn i(&mut self) -> Result<i64, DecodeError> {
        let v = self.u()?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }
    /// A float.
    pub fn f(&mut self) -> Result<f64, DecodeError> {
        let end = self.pos + 8;
        let bytes = self
            .buf
            .get(self.pos..end)
            .ok_or(DecodeError("truncated"))?;
        self.pos = end;
        Ok(f64::from_bits(u64::from_le_bytes(
            bytes.try_into().expect("8 bytes"),
        )))
    }
    /// A boolean.
    pub fn b(&mut self) -> Result<bool, DecodeError> {
        Ok(self.byte()? != 0)
    }
    /// Length-prefixed raw bytes.
    pub fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.count()?;
        let end = self.pos + n;
        let bytes = self
            .buf
            .get(self.pos..end)
            .ok_or(DecodeError("truncated"))?;
        self.pos = end;
        Ok(bytes)
    }

    /// A string.
    pub fn s(&mut self) -> Result<String, DecodeError> {
        let n = self.count()?;
        let end = self.pos + n;
        let bytes = self
            .buf
            .get(self.pos..end)
            .ok_or(DecodeError("truncated"))?;
        self.pos = end;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError("bad text"))
    }
    /// An optional signed integer.
    pub fn oi(&mut self) -> Result<Option<i64>, DecodeError> {
        Ok(if self.b()? { Some(self.i()?) } else { None })
    }
    /// An optional string.
    pub fn os(&mut self) -> Result<Option<String>, DecodeError> {
        Ok(if self.b()? { Some(self.s()?) } else { None })
    }
    /// A property value.
    pub fn value(&mut self) -> Result<Value, DecodeError> {
        Ok(match self.u()? {
            0 => Value::Bool(self.b()?),
            1 => Value::Int(self.i()?),
            2 => Value::Float(self.f()?),
            3 => Value::Str((self.s()?).into()),
            4 => Value::Json(self.s()?),
            _ => return Err(DecodeError("unknown value tag")),
        })
    }
}
