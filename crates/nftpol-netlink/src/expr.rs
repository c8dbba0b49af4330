//! nf_tables expressions: the few nftpol uses, written exactly as `nft`
//! 1.0.6 writes them (attribute order included), and read back into [`Expr`].
//!
//! `netlink-packet-netfilter` 0.4 types only bitwise, cmp, immediate, lookup,
//! meta and payload; ct, counter, fib, reject, byteorder, limit, log and dynset exist here only, so
//! all expressions are handled in this one module with the constants of
//! [`crate::uapi::expr`].

use crate::nla::{AttrTooLarge, Attrs, WireError, Writer};
use crate::uapi::{expr as x, list, verdict as code};

/// A verdict as the kernel encodes it: a code and, for jump/goto, a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawVerdict {
    /// `NFTA_VERDICT_CODE`.
    pub code: i32,
    /// `NFTA_VERDICT_CHAIN`.
    pub chain: Option<String>,
}

/// One decoded expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// `meta load KEY => reg DREG`.
    Meta {
        /// `NFT_META_*`.
        key: u32,
        /// Destination register.
        dreg: u32,
    },
    /// `cmp OP reg SREG DATA`.
    Cmp {
        /// Source register.
        sreg: u32,
        /// `NFT_CMP_*`.
        op: u32,
        /// Compared bytes.
        data: Vec<u8>,
    },
    /// `payload load LEN @ BASE + OFFSET => reg DREG`.
    Payload {
        /// Destination register.
        dreg: u32,
        /// `NFT_PAYLOAD_*_HEADER`.
        base: u32,
        /// Offset in the header.
        offset: u32,
        /// Bytes loaded.
        len: u32,
    },
    /// `lookup reg SREG set SET [dreg DREG] [flags]`.
    Lookup {
        /// Source register.
        sreg: u32,
        /// Set name.
        set: String,
        /// Destination register (0 for a verdict map).
        dreg: Option<u32>,
        /// `NFT_LOOKUP_F_*`.
        flags: u32,
    },
    /// `bitwise reg DREG = (reg SREG & MASK) ^ XOR`.
    Bitwise {
        /// Source register.
        sreg: u32,
        /// Destination register.
        dreg: u32,
        /// Bytes.
        len: u32,
        /// Mask bytes.
        mask: Vec<u8>,
        /// Xor bytes.
        xor: Vec<u8>,
    },
    /// `byteorder reg DREG = OP(reg SREG, SIZE, LEN)`.
    Byteorder {
        /// Source register.
        sreg: u32,
        /// Destination register.
        dreg: u32,
        /// `NFT_BYTEORDER_*`.
        op: u32,
        /// Bytes.
        len: u32,
        /// Word size.
        size: u32,
    },
    /// `counter`, with the values the kernel dumps (0 in what we write).
    Counter {
        /// `NFTA_COUNTER_PACKETS`.
        packets: u64,
        /// `NFTA_COUNTER_BYTES`.
        bytes: u64,
    },
    /// `immediate reg 0 VERDICT`.
    Verdict(RawVerdict),
    /// `reject type TYPE code CODE`.
    Reject {
        /// `NFT_REJECT_*`.
        kind: u32,
        /// ICMP(x) code.
        code: u8,
    },
    /// `ct load KEY => reg DREG [, dir DIRECTION]`.
    Ct {
        /// `NFT_CT_*`.
        key: u32,
        /// Destination register.
        dreg: u32,
        /// `IP_CT_DIR_*`, for keys of one direction's tuple.
        direction: Option<u8>,
    },
    /// `ct set KEY with reg SREG`.
    CtSet {
        /// `NFT_CT_*`.
        key: u32,
        /// Source register.
        sreg: u32,
    },
    /// `fib FLAGS RESULT => reg DREG`.
    Fib {
        /// `NFTA_FIB_F_*`.
        flags: u32,
        /// `NFT_FIB_RESULT_*`.
        result: u32,
        /// Destination register.
        dreg: u32,
    },
    /// `limit rate RATE/UNIT burst BURST type TYPE flags FLAGS`.
    Limit {
        /// `NFTA_LIMIT_RATE`.
        rate: u64,
        /// `NFTA_LIMIT_UNIT`, in seconds.
        unit: u64,
        /// `NFTA_LIMIT_BURST`.
        burst: u32,
        /// `NFT_LIMIT_*` (packets or bytes).
        kind: u32,
        /// `NFT_LIMIT_F_*` (inversion).
        flags: u32,
    },
    /// `log [prefix PREFIX] [group GROUP]`; `group` is `None` for a log to
    /// the kernel ring buffer, and `snaplen`/`qthreshold` are NFLOG tuning
    /// nftpol never sets.
    Log {
        /// `NFTA_LOG_GROUP`.
        group: Option<u16>,
        /// `NFTA_LOG_PREFIX`.
        prefix: Option<String>,
        /// Whether a snaplen, queue threshold or level was set.
        tuned: bool,
    },
    /// `dynset OP reg_key SREG_KEY set SET sreg_data SREG_DATA timeout T`:
    /// the packet path writes an element into a dynamic set or map.
    Dynset {
        /// The set's name.
        set: String,
        /// `NFT_DYNSET_OP_*`.
        op: u32,
        /// The key's first register.
        sreg_key: u32,
        /// The data's first register, for a map.
        sreg_data: Option<u32>,
        /// The element's timeout in milliseconds (`NFTA_DYNSET_TIMEOUT`).
        timeout_ms: u64,
        /// `NFT_DYNSET_F_*` (inversion, expressions).
        flags: u32,
    },
    /// Any other expression, by name.
    Other(String),
}

/// Writes expressions into an `NFTA_RULE_EXPRESSIONS` list.
pub struct ExprWriter<'a> {
    w: &'a mut Writer,
}

impl<'a> ExprWriter<'a> {
    /// Expressions appended to `w`, which must be inside the expressions list.
    pub fn new(w: &'a mut Writer) -> Self {
        Self { w }
    }

    fn expr(
        &mut self,
        name: &str,
        body: impl FnOnce(&mut Writer) -> Result<(), AttrTooLarge>,
    ) -> Result<(), AttrTooLarge> {
        let elem = self.w.begin_nested(list::ELEM);
        self.w.put_str(list::EXPR_NAME, name)?;
        let data = self.w.begin_nested(list::EXPR_DATA);
        body(self.w)?;
        self.w.end_nested(data)?;
        self.w.end_nested(elem)
    }

    /// `meta load KEY => reg DREG`.
    pub fn meta(&mut self, key: u32, dreg: u32) -> Result<(), AttrTooLarge> {
        self.expr("meta", |w| {
            w.put_u32(x::META_KEY, key)?;
            w.put_u32(x::META_DREG, dreg)
        })
    }

    /// `cmp OP reg SREG DATA`.
    pub fn cmp(&mut self, sreg: u32, op: u32, data: &[u8]) -> Result<(), AttrTooLarge> {
        self.expr("cmp", |w| {
            w.put_u32(x::CMP_SREG, sreg)?;
            w.put_u32(x::CMP_OP, op)?;
            let nest = w.begin_nested(x::CMP_DATA);
            w.put(list::DATA_VALUE, data)?;
            w.end_nested(nest)
        })
    }

    /// `payload load LEN @ BASE + OFFSET => reg DREG`.
    pub fn payload(
        &mut self,
        dreg: u32,
        base: u32,
        offset: u32,
        len: u32,
    ) -> Result<(), AttrTooLarge> {
        self.expr("payload", |w| {
            w.put_u32(x::PAYLOAD_DREG, dreg)?;
            w.put_u32(x::PAYLOAD_BASE, base)?;
            w.put_u32(x::PAYLOAD_OFFSET, offset)?;
            w.put_u32(x::PAYLOAD_LEN, len)
        })
    }

    /// `lookup reg SREG set SET`, inverted or as a verdict map (`dreg 0`).
    pub fn lookup(
        &mut self,
        sreg: u32,
        set: &str,
        dreg: Option<u32>,
        inverted: bool,
    ) -> Result<(), AttrTooLarge> {
        self.expr("lookup", |w| {
            w.put_u32(x::LOOKUP_SREG, sreg)?;
            if let Some(dreg) = dreg {
                w.put_u32(x::LOOKUP_DREG, dreg)?;
            }
            w.put_str(x::LOOKUP_SET, set)?;
            if inverted {
                w.put_u32(x::LOOKUP_FLAGS, x::LOOKUP_F_INV)?;
            }
            Ok(())
        })
    }

    /// `bitwise reg R = (reg R & MASK) ^ 0`.
    pub fn bitwise_mask(&mut self, reg: u32, mask: &[u8]) -> Result<(), AttrTooLarge> {
        self.bitwise(reg, mask, &vec![0; mask.len()])
    }

    /// `bitwise reg R = (reg R & MASK) ^ XOR`; `xor` is as long as `mask`.
    pub fn bitwise(&mut self, reg: u32, mask: &[u8], xor: &[u8]) -> Result<(), AttrTooLarge> {
        let len = u32::try_from(mask.len()).map_err(|_| AttrTooLarge {
            kind: x::BITWISE_LEN,
            len: mask.len(),
        })?;
        self.expr("bitwise", |w| {
            w.put_u32(x::BITWISE_SREG, reg)?;
            w.put_u32(x::BITWISE_DREG, reg)?;
            w.put_u32(x::BITWISE_LEN, len)?;
            let nest = w.begin_nested(x::BITWISE_MASK);
            w.put(list::DATA_VALUE, mask)?;
            w.end_nested(nest)?;
            let nest = w.begin_nested(x::BITWISE_XOR);
            w.put(list::DATA_VALUE, xor)?;
            w.end_nested(nest)
        })
    }

    /// `byteorder reg R = hton(reg R, SIZE, LEN)`.
    pub fn byteorder_hton(&mut self, reg: u32, size: u32, len: u32) -> Result<(), AttrTooLarge> {
        self.expr("byteorder", |w| {
            w.put_u32(x::BYTEORDER_SREG, reg)?;
            w.put_u32(x::BYTEORDER_DREG, reg)?;
            w.put_u32(x::BYTEORDER_OP, x::BYTEORDER_HTON)?;
            w.put_u32(x::BYTEORDER_LEN, len)?;
            w.put_u32(x::BYTEORDER_SIZE, size)
        })
    }

    /// `counter`.
    pub fn counter(&mut self) -> Result<(), AttrTooLarge> {
        self.expr("counter", |_| Ok(()))
    }

    /// `immediate reg 0 VERDICT`.
    pub fn verdict(&mut self, verdict: &RawVerdict) -> Result<(), AttrTooLarge> {
        self.expr("immediate", |w| {
            w.put_u32(x::IMMEDIATE_DREG, x::REG_VERDICT)?;
            let data = w.begin_nested(x::IMMEDIATE_DATA);
            write_verdict(w, verdict)?;
            w.end_nested(data)
        })
    }

    /// `reject with icmpx admin-prohibited`.
    pub fn reject_admin_prohibited(&mut self) -> Result<(), AttrTooLarge> {
        self.expr("reject", |w| {
            w.put_u32(x::REJECT_TYPE, x::REJECT_ICMPX_UNREACH)?;
            w.put(x::REJECT_ICMP_CODE, &[x::REJECT_ICMPX_ADMIN_PROHIBITED])
        })
    }

    /// `ct load KEY => reg DREG`.
    pub fn ct(&mut self, key: u32, dreg: u32) -> Result<(), AttrTooLarge> {
        self.expr("ct", |w| {
            w.put_u32(x::CT_KEY, key)?;
            w.put_u32(x::CT_DREG, dreg)
        })
    }

    /// `ct load KEY => reg DREG , dir DIRECTION`: a key of one direction's
    /// tuple (libnftnl's attribute order: key, dreg, direction).
    pub fn ct_directed(&mut self, key: u32, dreg: u32, direction: u8) -> Result<(), AttrTooLarge> {
        self.expr("ct", |w| {
            w.put_u32(x::CT_KEY, key)?;
            w.put_u32(x::CT_DREG, dreg)?;
            w.put(x::CT_DIRECTION_ATTR, &[direction])
        })
    }

    /// `ct set KEY with reg SREG`.
    pub fn ct_set(&mut self, key: u32, sreg: u32) -> Result<(), AttrTooLarge> {
        self.expr("ct", |w| {
            w.put_u32(x::CT_KEY, key)?;
            w.put_u32(x::CT_SREG, sreg)
        })
    }

    /// `limit rate RATE/UNIT burst BURST packets`, in the attribute order of
    /// libnftnl.
    pub fn limit(&mut self, rate: u64, unit: u64, burst: u32) -> Result<(), AttrTooLarge> {
        self.expr("limit", |w| {
            w.put(x::LIMIT_RATE, &rate.to_be_bytes())?;
            w.put(x::LIMIT_UNIT, &unit.to_be_bytes())?;
            w.put_u32(x::LIMIT_BURST, burst)?;
            w.put_u32(x::LIMIT_TYPE, x::LIMIT_PKTS)?;
            w.put_u32(x::LIMIT_FLAGS, 0)
        })
    }

    /// `log prefix PREFIX group GROUP` (NFLOG), prefix first as libnftnl
    /// writes it.
    pub fn log(&mut self, group: u16, prefix: &str) -> Result<(), AttrTooLarge> {
        self.expr("log", |w| {
            w.put_str(x::LOG_PREFIX, prefix)?;
            w.put(x::LOG_GROUP, &group.to_be_bytes())
        })
    }

    /// `dynset update reg_key SREG_KEY set SET sreg_data SREG_DATA timeout
    /// T`, in libnftnl's attribute order.
    pub fn dynset_update(
        &mut self,
        set: &str,
        sreg_key: u32,
        sreg_data: u32,
        timeout_ms: u64,
    ) -> Result<(), AttrTooLarge> {
        self.expr("dynset", |w| {
            w.put_u32(x::DYNSET_SREG_KEY, sreg_key)?;
            w.put_u32(x::DYNSET_SREG_DATA, sreg_data)?;
            w.put_u32(x::DYNSET_OP, x::DYNSET_OP_UPDATE)?;
            w.put(x::DYNSET_TIMEOUT, &timeout_ms.to_be_bytes())?;
            w.put_str(x::DYNSET_SET_NAME, set)
        })
    }

    /// `fib saddr type => reg DREG` (`flags` [`x::FIB_F_SADDR`]) or
    /// `fib daddr type` ([`x::FIB_F_DADDR`]).
    pub fn fib_addr_type(&mut self, flags: u32, dreg: u32) -> Result<(), AttrTooLarge> {
        self.expr("fib", |w| {
            w.put_u32(x::FIB_FLAGS, flags)?;
            w.put_u32(x::FIB_RESULT, x::FIB_RESULT_ADDRTYPE)?;
            w.put_u32(x::FIB_DREG, dreg)
        })
    }
}

/// Writes `NFTA_DATA_VERDICT { code, chain }`.
pub fn write_verdict(w: &mut Writer, verdict: &RawVerdict) -> Result<(), AttrTooLarge> {
    let nest = w.begin_nested(list::DATA_VERDICT);
    w.put(list::VERDICT_CODE, &verdict.code.to_be_bytes())?;
    if let Some(chain) = &verdict.chain {
        w.put_str(list::VERDICT_CHAIN, chain)?;
    }
    w.end_nested(nest)
}

/// Reads `NFTA_DATA_VERDICT` out of an `NFTA_DATA_*` nest.
pub fn read_verdict(data: Attrs<'_>) -> Result<RawVerdict, WireError> {
    for attr in data {
        let attr = attr?;
        if attr.kind == list::DATA_VERDICT {
            let mut verdict = RawVerdict {
                code: code::DROP,
                chain: None,
            };
            let mut has_code = false;
            for inner in attr.nested() {
                let inner = inner?;
                match inner.kind {
                    list::VERDICT_CODE => {
                        verdict.code =
                            i32::from_be_bytes(inner.value.try_into().map_err(|_| {
                                WireError::Invalid {
                                    what: "verdict code",
                                }
                            })?);
                        has_code = true;
                    }
                    list::VERDICT_CHAIN => verdict.chain = Some(inner.string("verdict chain")?),
                    _ => {}
                }
            }
            if !has_code {
                return Err(WireError::Invalid {
                    what: "verdict without code",
                });
            }
            return Ok(verdict);
        }
    }
    Err(WireError::Invalid {
        what: "data without verdict",
    })
}

/// Reads the bytes of an `NFTA_DATA_VALUE` nest.
pub fn read_value(data: Attrs<'_>) -> Result<Vec<u8>, WireError> {
    for attr in data {
        let attr = attr?;
        if attr.kind == list::DATA_VALUE {
            return Ok(attr.value.to_vec());
        }
    }
    Err(WireError::Invalid {
        what: "data without value",
    })
}

/// Decodes an `NFTA_RULE_EXPRESSIONS` list.
pub fn read_exprs(list_attrs: Attrs<'_>) -> Result<Vec<Expr>, WireError> {
    let mut exprs = Vec::new();
    for elem in list_attrs {
        let elem = elem?;
        if elem.kind != list::ELEM {
            continue;
        }
        let mut name = None;
        let mut data = None;
        for attr in elem.nested() {
            let attr = attr?;
            match attr.kind {
                list::EXPR_NAME => name = Some(attr.string("expression name")?),
                list::EXPR_DATA => data = Some(attr),
                _ => {}
            }
        }
        let name = name.ok_or(WireError::Invalid {
            what: "expression without name",
        })?;
        let fields = match data {
            Some(data) => data.nested().collect_all()?,
            None => Vec::new(),
        };
        exprs.push(read_expr(&name, &fields)?);
    }
    Ok(exprs)
}

/// An `NLA_U64` value (`nla_put_be64`), which must be exactly 8 bytes.
fn be_u64(value: &[u8], what: &'static str) -> Result<u64, WireError> {
    let bytes: [u8; 8] = value.try_into().map_err(|_| WireError::Invalid { what })?;
    Ok(u64::from_be_bytes(bytes))
}

/// A `ct` expression: a load (with a direction for tuple keys) or a set.
fn read_ct(fields: &[crate::nla::Attr<'_>]) -> Result<Expr, WireError> {
    let get = |kind: u16| fields.iter().find(|attr| attr.kind == kind);
    let u32_of = |kind: u16, what: &'static str| -> Result<u32, WireError> {
        get(kind).ok_or(WireError::Invalid { what })?.u32(what)
    };
    let key = u32_of(x::CT_KEY, "ct key")?;
    if get(x::CT_SREG).is_some() {
        return Ok(Expr::CtSet {
            key,
            sreg: u32_of(x::CT_SREG, "ct sreg")?,
        });
    }
    Ok(Expr::Ct {
        key,
        dreg: u32_of(x::CT_DREG, "ct dreg")?,
        direction: get(x::CT_DIRECTION_ATTR)
            .map(|attr| match attr.value {
                [direction] => Ok(*direction),
                _ => Err(WireError::Invalid {
                    what: "ct direction",
                }),
            })
            .transpose()?,
    })
}

fn read_expr(name: &str, fields: &[crate::nla::Attr<'_>]) -> Result<Expr, WireError> {
    let get = |kind: u16| fields.iter().find(|attr| attr.kind == kind);
    let u32_of = |kind: u16, what: &'static str| -> Result<u32, WireError> {
        get(kind).ok_or(WireError::Invalid { what })?.u32(what)
    };
    let nested_value = |kind: u16, what: &'static str| -> Result<Vec<u8>, WireError> {
        read_value(get(kind).ok_or(WireError::Invalid { what })?.nested())
    };
    Ok(match name {
        "meta" => Expr::Meta {
            key: u32_of(x::META_KEY, "meta key")?,
            dreg: u32_of(x::META_DREG, "meta dreg")?,
        },
        "cmp" => Expr::Cmp {
            sreg: u32_of(x::CMP_SREG, "cmp sreg")?,
            op: u32_of(x::CMP_OP, "cmp op")?,
            data: nested_value(x::CMP_DATA, "cmp data")?,
        },
        "payload" => Expr::Payload {
            dreg: u32_of(x::PAYLOAD_DREG, "payload dreg")?,
            base: u32_of(x::PAYLOAD_BASE, "payload base")?,
            offset: u32_of(x::PAYLOAD_OFFSET, "payload offset")?,
            len: u32_of(x::PAYLOAD_LEN, "payload len")?,
        },
        "lookup" => Expr::Lookup {
            sreg: u32_of(x::LOOKUP_SREG, "lookup sreg")?,
            set: get(x::LOOKUP_SET)
                .ok_or(WireError::Invalid { what: "lookup set" })?
                .string("lookup set")?,
            dreg: get(x::LOOKUP_DREG)
                .map(|attr| attr.u32("lookup dreg"))
                .transpose()?,
            flags: get(x::LOOKUP_FLAGS)
                .map(|attr| attr.u32("lookup flags"))
                .transpose()?
                .unwrap_or(0),
        },
        "bitwise" => Expr::Bitwise {
            sreg: u32_of(x::BITWISE_SREG, "bitwise sreg")?,
            dreg: u32_of(x::BITWISE_DREG, "bitwise dreg")?,
            len: u32_of(x::BITWISE_LEN, "bitwise len")?,
            mask: nested_value(x::BITWISE_MASK, "bitwise mask")?,
            xor: nested_value(x::BITWISE_XOR, "bitwise xor")?,
        },
        "byteorder" => Expr::Byteorder {
            sreg: u32_of(x::BYTEORDER_SREG, "byteorder sreg")?,
            dreg: u32_of(x::BYTEORDER_DREG, "byteorder dreg")?,
            op: u32_of(x::BYTEORDER_OP, "byteorder op")?,
            len: u32_of(x::BYTEORDER_LEN, "byteorder len")?,
            size: u32_of(x::BYTEORDER_SIZE, "byteorder size")?,
        },
        "counter" => Expr::Counter {
            packets: get(x::COUNTER_PACKETS)
                .map(|attr| be_u64(attr.value, "counter packets"))
                .transpose()?
                .unwrap_or(0),
            bytes: get(x::COUNTER_BYTES)
                .map(|attr| be_u64(attr.value, "counter bytes"))
                .transpose()?
                .unwrap_or(0),
        },
        "immediate" => {
            if u32_of(x::IMMEDIATE_DREG, "immediate dreg")? != x::REG_VERDICT {
                return Ok(Expr::Other("immediate (data)".to_owned()));
            }
            let data = get(x::IMMEDIATE_DATA).ok_or(WireError::Invalid {
                what: "immediate data",
            })?;
            Expr::Verdict(read_verdict(data.nested())?)
        }
        "reject" => Expr::Reject {
            kind: u32_of(x::REJECT_TYPE, "reject type")?,
            code: get(x::REJECT_ICMP_CODE)
                .and_then(|attr| attr.value.first().copied())
                .unwrap_or(0),
        },
        "ct" => read_ct(fields)?,
        "fib" => Expr::Fib {
            flags: u32_of(x::FIB_FLAGS, "fib flags")?,
            result: u32_of(x::FIB_RESULT, "fib result")?,
            dreg: u32_of(x::FIB_DREG, "fib dreg")?,
        },
        // xtables extensions of iptables-nft: `NFTA_MATCH_NAME` and
        // `NFTA_TARGET_NAME` are both attribute 1.
        "match" | "target" => Expr::Other(match get(1) {
            Some(attr) => format!("{name} {}", attr.string("xtables name")?),
            None => name.to_owned(),
        }),
        "limit" => read_limit(fields)?,
        "log" => read_log(fields)?,
        "dynset" => read_dynset(fields)?,
        other => Expr::Other(other.to_owned()),
    })
}

fn read_dynset(fields: &[crate::nla::Attr<'_>]) -> Result<Expr, WireError> {
    let get = |kind: u16| fields.iter().find(|attr| attr.kind == kind);
    let u32_of = |kind: u16, what: &'static str| -> Result<u32, WireError> {
        get(kind).ok_or(WireError::Invalid { what })?.u32(what)
    };
    Ok(Expr::Dynset {
        set: get(x::DYNSET_SET_NAME)
            .ok_or(WireError::Invalid { what: "dynset set" })?
            .string("dynset set")?,
        op: u32_of(x::DYNSET_OP, "dynset op")?,
        sreg_key: u32_of(x::DYNSET_SREG_KEY, "dynset key register")?,
        sreg_data: get(x::DYNSET_SREG_DATA)
            .map(|attr| attr.u32("dynset data register"))
            .transpose()?,
        timeout_ms: get(x::DYNSET_TIMEOUT)
            .map(|attr| be_u64(attr.value, "dynset timeout"))
            .transpose()?
            .unwrap_or(0),
        flags: get(x::DYNSET_FLAGS)
            .map(|attr| attr.u32("dynset flags"))
            .transpose()?
            .unwrap_or(0),
    })
}

fn read_limit(fields: &[crate::nla::Attr<'_>]) -> Result<Expr, WireError> {
    let get = |kind: u16| fields.iter().find(|attr| attr.kind == kind);
    let u64_of = |kind: u16, what: &'static str| -> Result<u64, WireError> {
        be_u64(get(kind).ok_or(WireError::Invalid { what })?.value, what)
    };
    let u32_or = |kind: u16, what: &'static str, default: u32| -> Result<u32, WireError> {
        get(kind)
            .map(|attr| attr.u32(what))
            .transpose()
            .map(|value| value.unwrap_or(default))
    };
    Ok(Expr::Limit {
        rate: u64_of(x::LIMIT_RATE, "limit rate")?,
        unit: u64_of(x::LIMIT_UNIT, "limit unit")?,
        burst: u32_or(x::LIMIT_BURST, "limit burst", 0)?,
        kind: u32_or(x::LIMIT_TYPE, "limit type", x::LIMIT_PKTS)?,
        flags: u32_or(x::LIMIT_FLAGS, "limit flags", 0)?,
    })
}

fn read_log(fields: &[crate::nla::Attr<'_>]) -> Result<Expr, WireError> {
    let get = |kind: u16| fields.iter().find(|attr| attr.kind == kind);
    Ok(Expr::Log {
        group: get(x::LOG_GROUP)
            .map(|attr| {
                <[u8; 2]>::try_from(attr.value)
                    .map(u16::from_be_bytes)
                    .map_err(|_| WireError::Invalid { what: "log group" })
            })
            .transpose()?,
        prefix: get(x::LOG_PREFIX)
            .map(|attr| attr.string("log prefix"))
            .transpose()?,
        // The kernel dumps a snaplen or threshold only when non-zero.
        tuned: [x::LOG_SNAPLEN, x::LOG_QTHRESHOLD, x::LOG_LEVEL]
            .into_iter()
            .any(|kind| get(kind).is_some()),
    })
}
