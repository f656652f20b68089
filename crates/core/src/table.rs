//! Column tables as CLIs print them: HashiCorp's (Go's `columnize`/`tabwriter`: columns
//! left-aligned, two or more spaces apart, header names may hold one space such as
//! `Commit Index`), with or without a dashed underline (Vault), or `|`-separated.

/// A table read from a command's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// Column names, as in the header.
    pub header: Vec<String>,
    /// The data rows.
    pub rows: Vec<Row>,
}

/// One data row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// 1-based line in the output.
    pub line: usize,
    /// The line as printed.
    pub text: String,
    /// One cell per header column, trimmed; missing trailing cells are empty.
    pub cells: Vec<String>,
}

/// A table that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {text:?}: {reason}")]
pub struct TableError {
    /// 1-based line.
    pub line: usize,
    /// The line.
    pub text: String,
    /// What is wrong.
    pub reason: String,
}

fn is_rule(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && t.chars().all(|c| matches!(c, '-' | '=' | '+' | '|' | ' '))
}

fn pipe_cells(line: &str) -> Vec<String> {
    let t = line.trim();
    let t = t.strip_prefix('|').unwrap_or(t);
    let t = t.strip_suffix('|').unwrap_or(t);
    t.split('|').map(|c| c.trim().to_owned()).collect()
}

impl Table {
    /// Reads a table whose first non-blank line is the header.
    ///
    /// # Errors
    /// [`TableError`] for no header, or a row whose text crosses a column boundary.
    pub fn parse(text: &str) -> Result<Self, TableError> {
        let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
        let Some((hline, header_text)) = lines.next() else {
            return Err(TableError {
                line: 1,
                text: String::new(),
                reason: "no header line".into(),
            });
        };
        let header_text = if is_rule(header_text) {
            // A boxed table starts with a rule; the header is the next line.
            match lines.next() {
                Some((_, h)) => h,
                None => {
                    return Err(TableError {
                        line: hline + 1,
                        text: header_text.into(),
                        reason: "no header line".into(),
                    })
                }
            }
        } else {
            header_text
        };
        if header_text.contains('|') {
            let header = pipe_cells(header_text);
            let rows = lines
                .filter(|(_, l)| !is_rule(l))
                .map(|(i, l)| Row {
                    line: i + 1,
                    text: l.to_owned(),
                    cells: pipe_cells(l),
                })
                .collect();
            return Ok(Self { header, rows });
        }
        let chars: Vec<char> = header_text.chars().collect();
        let mut starts = Vec::new();
        for i in 0..chars.len() {
            let begins = chars[i] != ' ' && (i == 0 || (i >= 2 && chars[i - 1] == ' ' && chars[i - 2] == ' '));
            if begins {
                starts.push(i);
            }
        }
        let header: Vec<String> = cut(&chars, &starts);
        let mut rows = Vec::new();
        for (i, l) in lines {
            if is_rule(l) {
                continue;
            }
            let lc: Vec<char> = l.chars().collect();
            for &s in starts.iter().skip(1) {
                if s < lc.len() && s > 0 && lc[s - 1] != ' ' && lc[s] != ' ' {
                    return Err(TableError {
                        line: i + 1,
                        text: l.to_owned(),
                        reason: format!(
                            "a value crosses the start of column {:?}",
                            header[starts.iter().position(|&x| x == s).unwrap_or(0)]
                        ),
                    });
                }
            }
            rows.push(Row {
                line: i + 1,
                text: l.to_owned(),
                cells: cut(&lc, &starts),
            });
        }
        Ok(Self { header, rows })
    }

    /// The index of column `name` (case-insensitive).
    pub fn column(&self, name: &str) -> Option<usize> {
        self.header.iter().position(|h| h.eq_ignore_ascii_case(name))
    }

    /// The cell of `row` in column `name`, `None` when the table has no such column.
    pub fn get<'a>(&self, row: &'a Row, name: &str) -> Option<&'a str> {
        self.column(name).map(|i| row.cells.get(i).map_or("", String::as_str))
    }
}

fn cut(chars: &[char], starts: &[usize]) -> Vec<String> {
    starts
        .iter()
        .enumerate()
        .map(|(k, &s)| {
            let e = starts.get(k + 1).copied().unwrap_or(chars.len()).min(chars.len());
            if s >= chars.len() {
                String::new()
            } else {
                chars[s..e].iter().collect::<String>().trim().to_owned()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_with_spaces_in_names_and_values() {
        let t = Table::parse(
            "Node      ID     Address           State     Commit Index  Trails Leader By\n\
             consul-c  b142   172.31.4.12:8300  leader    5521          -\n\
             consul-a  35d4   172.31.4.10:8300  follower  5521          0 commits\n",
        )
        .unwrap();
        assert_eq!(
            t.header,
            ["Node", "ID", "Address", "State", "Commit Index", "Trails Leader By"]
        );
        assert_eq!(
            t.rows[1].cells,
            ["consul-a", "35d4", "172.31.4.10:8300", "follower", "5521", "0 commits"]
        );
        assert_eq!(t.get(&t.rows[0], "commit index"), Some("5521"));
        assert_eq!(t.get(&t.rows[0], "Voter"), None);
        assert_eq!(t.rows[0].line, 2);
    }

    #[test]
    fn dashed_underline_and_pipes() {
        let t = Table::parse("Node    Address\n----    -------\nv-1     10.0.3.11:8201\n").unwrap();
        assert_eq!(t.rows.len(), 1);
        assert_eq!(t.rows[0].cells, ["v-1", "10.0.3.11:8201"]);
        let t = Table::parse("+---+---+\n| A | B |\n+---+---+\n| 1 | 2 |\n+---+---+\n").unwrap();
        assert_eq!(
            (t.header.clone(), t.rows[0].cells.clone()),
            (
                vec!["A".to_owned(), "B".to_owned()],
                vec!["1".to_owned(), "2".to_owned()]
            )
        );
    }

    #[test]
    fn misaligned_row_is_an_error_quoting_it() {
        let err = Table::parse("Node  State\nnode-with-a-long-name  leader\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(
            err.to_string().contains("node-with-a-long-name") && err.reason.contains("\"State\""),
            "{err}"
        );
        assert!(Table::parse("\n\n").is_err());
    }
}
