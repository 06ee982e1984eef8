//! Diagnostics, located in their file and shown as text (with the span underlined) or
//! as JSON (product.md §2).

use std::fmt;
use std::ops::Range;

use serde::Serialize;

use crate::config::source::SourceMap;
use crate::diagnostic::{Diagnostic, Severity};

/// A diagnostic with its place in the file resolved.
#[derive(Debug, Clone)]
pub struct Located<'a> {
    pub diagnostic: &'a Diagnostic,
    /// The file the diagnostic is in: the file given, or a base it extends.
    pub file: String,
    pub span: Option<Range<usize>>,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub related: Vec<(Range<usize>, &'a str)>,
}

/// Resolves every diagnostic's pointer against `source`, ordered as they appear in the
/// file.
pub fn locate<'a>(diagnostics: &'a [Diagnostic], source: &SourceMap) -> Vec<Located<'a>> {
    let mut located: Vec<Located<'a>> = diagnostics
        .iter()
        .map(|diagnostic| {
            let span = diagnostic
                .span
                .clone()
                .or_else(|| diagnostic.at.as_ref().map(|at| source.span(at)));
            let (line, column) = match &span {
                Some(span) => {
                    let (line, column) = source.line_column(span.start);
                    (Some(line), Some(column))
                }
                None => (None, None),
            };
            let related = diagnostic
                .related
                .iter()
                .map(|related| (source.span(&related.at), related.label.as_str()))
                .collect();
            let file = match &span {
                Some(span) => source.file_at(span.start).1.to_string(),
                None => source.name.clone(),
            };
            Located {
                diagnostic,
                file,
                span,
                line,
                column,
                related,
            }
        })
        .collect();
    located.sort_by_key(|l| {
        (
            l.span.as_ref().map(|span| source.file_at(span.start).0),
            l.line.unwrap_or(0),
            l.column.unwrap_or(0),
            l.diagnostic.code,
        )
    });
    located
}

/// Renders diagnostics the way compilers do: code, message, the file excerpt with the
/// span underlined, and the help.
pub fn write_text(
    located: &[Located<'_>],
    source: &SourceMap,
    color: bool,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    let theme = if color {
        miette::GraphicalTheme::unicode()
    } else {
        miette::GraphicalTheme::unicode_nocolor()
    };
    let handler = miette::GraphicalReportHandler::new_themed(theme).with_context_lines(1);
    let named = Windowed { source };
    for item in located {
        let excerpt = item
            .span
            .iter()
            .chain(item.related.iter().map(|(span, _)| span))
            .all(|span| excerpt_fits(&source.text, span));
        let shown = Shown {
            item,
            source: &named,
            excerpt,
        };
        let mut rendered = String::new();
        if handler.render_report(&mut rendered, &shown).is_err() {
            rendered = format!("{}: {}\n", item.diagnostic.code, item.diagnostic.message);
        }
        if !excerpt && let (Some(line), Some(column)) = (item.line, item.column) {
            rendered.push_str(&format!(
                "  at {}:{line}:{column} (too wide to show)\n",
                item.file
            ));
        }
        out.write_all(rendered.as_bytes())?;
    }
    Ok(())
}

/// The longest line shown in an excerpt. Longer ones are not worth reading on a
/// terminal, and miette's graphical handler overflows on lines of 65,536 characters.
const EXCERPT_LINE_LIMIT: usize = 1_000;

/// Whether every line the excerpt of `span` shows (the lines it touches and one line
/// of context either side) is short enough to show.
fn excerpt_fits(text: &str, span: &Range<usize>) -> bool {
    let start = span.start.min(text.len());
    let end = span.end.clamp(start, text.len());
    let line_start = text[..start].rfind('\n').unwrap_or(0);
    let context_start = text[..line_start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[end..].find('\n').map_or(text.len(), |i| end + i + 1);
    let context_end = text[line_end..]
        .find('\n')
        .map_or(text.len(), |i| line_end + i);
    let (line_start, line_end) = (context_start, context_end.max(line_start));
    text[line_start..line_end]
        .split('\n')
        .all(|line| line.len() <= EXCERPT_LINE_LIMIT)
}

/// The file as miette reads it, one excerpt at a time: each read starts at the first
/// line it shows, found through the line index, instead of at the start of the file
/// (which made showing n diagnostics take time in n times the file's length).
struct Windowed<'a> {
    source: &'a SourceMap,
}

impl miette::SourceCode for Windowed<'_> {
    fn read_span<'a>(
        &'a self,
        span: &miette::SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn miette::SpanContents<'a> + 'a>, miette::MietteError> {
        let (first_line, from) = self
            .source
            .line_start_before(span.offset(), context_lines_before);
        let (_, name, file) = self.source.file_at(span.offset());
        // Context lines never reach into the next file.
        let window = &self.source.text[from..file.end.max(from)];
        let shifted = miette::SourceSpan::new((span.offset() - from).into(), span.len());
        let contents = window.read_span(&shifted, context_lines_before, context_lines_after)?;
        Ok(Box::new(miette::MietteSpanContents::new_named(
            name.to_string(),
            contents.data(),
            miette::SourceSpan::new(
                (contents.span().offset() + from).into(),
                contents.span().len(),
            ),
            contents.line() + first_line,
            contents.column(),
            contents.line_count() + first_line,
        )))
    }
}

struct Shown<'a> {
    item: &'a Located<'a>,
    source: &'a Windowed<'a>,
    /// Whether to show the file excerpt with the span underlined.
    excerpt: bool,
}

impl fmt::Debug for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.item.diagnostic.message)
    }
}

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.item.diagnostic.message)
    }
}

impl std::error::Error for Shown<'_> {}

impl miette::Diagnostic for Shown<'_> {
    fn code<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        Some(Box::new(self.item.diagnostic.code.as_str()))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.item.diagnostic.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }

    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        self.item
            .diagnostic
            .help
            .as_ref()
            .map(|help| Box::new(help) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.item
            .span
            .as_ref()
            .filter(|_| self.excerpt)
            .map(|_| self.source as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        let span = self.item.span.clone().filter(|_| self.excerpt)?;
        let primary =
            miette::LabeledSpan::new_primary_with_span(self.item.diagnostic.label.clone(), span);
        let related = self.item.related.iter().map(|(span, label)| {
            miette::LabeledSpan::new_with_span(Some(label.to_string()), span.clone())
        });
        Some(Box::new(std::iter::once(primary).chain(related)))
    }
}

/// One diagnostic in JSON output.
#[derive(Debug, Serialize)]
pub struct WireDiagnostic<'a> {
    pub code: &'static str,
    pub severity: &'static str,
    pub message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<&'a str>,
    pub file: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

pub fn wire<'a>(located: &'a [Located<'a>]) -> Vec<WireDiagnostic<'a>> {
    located
        .iter()
        .map(|item| WireDiagnostic {
            code: item.diagnostic.code.as_str(),
            severity: item.diagnostic.severity.as_str(),
            message: &item.diagnostic.message,
            help: item.diagnostic.help.as_deref(),
            file: &item.file,
            line: item.line,
            column: item.column,
            path: item
                .diagnostic
                .at
                .as_ref()
                .map(|at| at.dotted())
                .filter(|p| !p.is_empty()),
        })
        .collect()
}

/// `stowage validate --format json`: the same document shape as a plan's (product.md
/// §2), with no changes, since validation plans nothing.
#[derive(Debug, Serialize)]
pub struct ValidateReport<'a> {
    pub format_version: u32,
    pub valid: bool,
    pub diagnostics: Vec<WireDiagnostic<'a>>,
    pub changes: [(); 0],
    pub unmanaged: [(); 0],
    pub summary: EmptySummary,
}

#[derive(Debug, Default, Serialize)]
pub struct EmptySummary {
    pub create: usize,
    pub update: usize,
    pub delete: usize,
}
