//! CSV as RFC 4180 writes it: comma separated, CRLF line ends, a field in
//! double quotes when it holds a comma, a quote, CR or LF (quotes doubled).
//! Text a person or a service typed (descriptions, references) is also
//! defused against spreadsheet formulas: a cell starting with `=`, `+`, `-`,
//! `@`, TAB or CR gets a leading `'` (OWASP "CSV injection"). Amounts are
//! written as they are (a debit's `-5.00` is a number, not a formula).

/// One cell.
#[derive(Clone, Copy, Debug)]
pub enum Cell<'a> {
    /// Our own values: ids, timestamps, amounts, enums.
    Plain(&'a str),
    /// Free text from outside: defused against formulas.
    Text(&'a str),
}

/// Appends one row (and its CRLF) to `out`.
pub fn push_row(out: &mut String, cells: &[Cell<'_>]) {
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let (text, defuse) = match *cell {
            Cell::Plain(text) => (text, false),
            Cell::Text(text) => (text, text.starts_with(['=', '+', '-', '@', '\t', '\r'])),
        };
        let quote = defuse || text.contains([',', '"', '\r', '\n']);
        if quote {
            out.push('"');
        }
        if defuse {
            out.push('\'');
        }
        for c in text.chars() {
            if c == '"' {
                out.push('"');
            }
            out.push(c);
        }
        if quote {
            out.push('"');
        }
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[Cell<'_>]) -> String {
        let mut out = String::new();
        push_row(&mut out, cells);
        out
    }

    #[test]
    fn fields_are_quoted_only_when_needed() {
        assert_eq!(
            row(&[Cell::Plain("a"), Cell::Plain("12.50")]),
            "a,12.50\r\n"
        );
        assert_eq!(row(&[Cell::Text("a,b")]), "\"a,b\"\r\n");
        assert_eq!(row(&[Cell::Text("say \"hi\"")]), "\"say \"\"hi\"\"\"\r\n");
        assert_eq!(row(&[Cell::Text("two\nlines")]), "\"two\nlines\"\r\n");
        assert_eq!(row(&[Cell::Text("")]), "\r\n");
        assert_eq!(row(&[Cell::Text("é ✓")]), "é ✓\r\n");
    }

    #[test]
    fn formulas_in_text_are_defused_but_amounts_are_not() {
        assert_eq!(
            row(&[Cell::Text("=HYPERLINK(\"x\")")]),
            "\"'=HYPERLINK(\"\"x\"\")\"\r\n"
        );
        assert_eq!(row(&[Cell::Text("@SUM(A1)")]), "\"'@SUM(A1)\"\r\n");
        assert_eq!(row(&[Cell::Text("-1+1")]), "\"'-1+1\"\r\n");
        assert_eq!(row(&[Cell::Plain("-5.00")]), "-5.00\r\n");
    }

    /// Every row reads back as the cells written (a tiny RFC 4180 reader).
    #[test]
    fn rows_read_back() {
        let cells = ["plain", "a,b", "q\"uote", "cr\r\nlf", "", " spaced "];
        let written = row(&cells.map(Cell::Text));
        let mut fields = vec![String::new()];
        let mut quoted = false;
        let mut chars = written.trim_end_matches("\r\n").chars().peekable();
        while let Some(c) = chars.next() {
            match (c, quoted) {
                ('"', false) => quoted = true,
                ('"', true) if chars.peek() == Some(&'"') => {
                    chars.next();
                    fields.last_mut().unwrap().push('"');
                }
                ('"', true) => quoted = false,
                (',', false) => fields.push(String::new()),
                (c, _) => fields.last_mut().unwrap().push(c),
            }
        }
        assert_eq!(fields, cells);
    }
}
