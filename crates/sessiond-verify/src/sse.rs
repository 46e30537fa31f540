//! An incremental Server-Sent Events parser (the WHATWG event-stream format): bytes in, events
//! out, whatever the chunking.

use crate::error::Error;

/// A line longer than this ends the connection (a feed line is a few hundred bytes).
const MAX_LINE: usize = 64 * 1024;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// The last `id:` seen on the stream so far (it persists across events, per the format).
    pub(crate) id: Option<String>,
    /// The `event:` name (`message` when absent).
    pub(crate) event: String,
    pub(crate) data: String,
}

#[derive(Debug, Default)]
pub(crate) struct SseParser {
    line: Vec<u8>,
    /// The previous byte was a CR: a following LF belongs to the same line end.
    after_cr: bool,
    event: String,
    data: String,
    has_data: bool,
    last_id: Option<String>,
}

impl SseParser {
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, Error> {
        let mut out = Vec::new();
        for &b in chunk {
            match b {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\r' | b'\n' => {
                    self.after_cr = b == b'\r';
                    let line = std::mem::take(&mut self.line);
                    if let Some(ev) = self.line_done(&line)? {
                        out.push(ev);
                    }
                }
                _ => {
                    self.after_cr = false;
                    if self.line.len() >= MAX_LINE {
                        return Err(Error::Upstream("feed line too long".into()));
                    }
                    self.line.push(b);
                }
            }
        }
        Ok(out)
    }

    fn line_done(&mut self, line: &[u8]) -> Result<Option<SseEvent>, Error> {
        if line.is_empty() {
            return Ok(self.dispatch());
        }
        let line = std::str::from_utf8(line)
            .map_err(|_| Error::Upstream("feed line is not UTF-8".into()))?;
        if line.starts_with(':') {
            return Ok(None);
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => value.clone_into(&mut self.event),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "id" if !value.contains('\0') => self.last_id = Some(value.to_owned()),
            _ => {}
        }
        Ok(None)
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = std::mem::take(&mut self.event);
        if !std::mem::take(&mut self.has_data) {
            return None;
        }
        Some(SseEvent {
            id: self.last_id.clone(),
            event: if event.is_empty() {
                "message".into()
            } else {
                event
            },
            data: std::mem::take(&mut self.data),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut p = SseParser::default();
        chunks
            .iter()
            .flat_map(|c| p.push(c).unwrap_or_else(|e| panic!("{e}")))
            .collect()
    }

    fn ev(id: Option<&str>, event: &str, data: &str) -> SseEvent {
        SseEvent {
            id: id.map(str::to_owned),
            event: event.into(),
            data: data.into(),
        }
    }

    #[test]
    fn events_survive_any_chunking_and_line_ending() {
        let text = b"id: 7\r\nevent: session\r\ndata: {\"a\":1}\r\n\r\n: comment\nevent: heartbeat\ndata:{}\n\n";
        let expected = vec![
            ev(Some("7"), "session", "{\"a\":1}"),
            ev(Some("7"), "heartbeat", "{}"),
        ];
        assert_eq!(all(&[text]), expected);
        for split in 1..text.len() {
            let (a, b) = text.split_at(split);
            assert_eq!(all(&[a, b]), expected, "split at {split}");
        }
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(all(&bytes), expected);
    }

    #[test]
    fn multi_line_data_joins_and_bare_cr_ends_lines() {
        assert_eq!(
            all(&[b"data: a\rdata: b\r\rid: 9\ndata\n\n"]),
            vec![ev(None, "message", "a\nb"), ev(Some("9"), "message", "")]
        );
    }

    #[test]
    fn an_event_without_data_is_not_dispatched_but_its_id_sticks() {
        assert_eq!(
            all(&[b"id: 3\nevent: x\n\ndata: y\n\n"]),
            vec![ev(Some("3"), "message", "y")]
        );
    }

    #[test]
    fn ids_with_nul_are_ignored_and_huge_lines_refused() {
        assert_eq!(
            all(&[b"id: 1\n\nid: a\0b\ndata: z\n\n"]),
            vec![ev(Some("1"), "message", "z")]
        );
        let mut p = SseParser::default();
        assert!(p.push(&vec![b'x'; MAX_LINE + 1]).is_err());
    }
}
