//! The data: human-written dates mapped to their ISO 8601 form, generated in-process from a seed.
//!
//! Every example is a calendar date between [`FIRST_YEAR`]-01-01 and [`LAST_YEAR`]-12-31 (drawn
//! uniformly by day) written in one of the [`FORMATS`], in its written case, lower case or upper
//! case. The target is always `YYYY-MM-DD`.
//!
//! Conventions, fixed so that every input string has exactly one meaning:
//! - **Slashes are month first** (US): `03/04/2017` and `3/4/17` are March 4th.
//! - **Dots are day first** (European): `4.3.2017` and `04.03.17` are March 4th.
//! - **A four-digit year written first is year-month-day**: `2017-03-04`, `2017/03/04`,
//!   `20170304`.
//! - **Two-digit years** `50..=99` are 1950–1999 and `00..=49` are 2000–2049; that is why the
//!   dates span exactly the century 1950–2049.
//!
//! The train, validation and test sets are disjoint by input string (which fixes the date, the
//! format and the case); [`Dataset::generate`] checks it before returning.

use couplet::data::{Vocabulary, VocabularyConfig};
use couplet::{Error, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{HashMap, HashSet};

/// The first year of the generated dates.
pub const FIRST_YEAR: i32 = 1950;
/// The last year of the generated dates (two-digit years cover exactly `FIRST_YEAR..=LAST_YEAR`).
pub const LAST_YEAR: i32 = 2049;

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];

/// Whether `year` is a leap year in the proleptic Gregorian calendar.
pub fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// The number of days of `month` (1–12) in `year`.
pub fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A calendar date (proleptic Gregorian).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Date {
    /// The year, e.g. 2017.
    pub year: i32,
    /// The month, 1–12.
    pub month: u32,
    /// The day of the month, 1–31.
    pub day: u32,
}

impl Date {
    /// The date `year-month-day`, or `None` if it does not exist.
    pub fn new(year: i32, month: u32, day: u32) -> Option<Date> {
        ((1..=12).contains(&month) && (1..=days_in_month(year, month)).contains(&day)).then_some(Date {
            year,
            month,
            day,
        })
    }

    /// The date `days` days after 1970-01-01 (H. Hinnant's `civil_from_days`).
    pub fn from_days(days: i64) -> Date {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
        Date { year, month, day }
    }

    /// Days since 1970-01-01 (H. Hinnant's `days_from_civil`).
    pub fn days(&self) -> i64 {
        let y = i64::from(self.year) - i64::from(self.month <= 2);
        let era = y.div_euclid(400);
        let yoe = y.rem_euclid(400);
        let m = i64::from(self.month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// The day of the week, 0 = Monday … 6 = Sunday (1970-01-01 was a Thursday).
    pub fn weekday(&self) -> usize {
        (self.days() + 3).rem_euclid(7) as usize
    }

    /// The ISO 8601 form `YYYY-MM-DD`: the model's target.
    pub fn iso(&self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }

    fn month_name(&self) -> &'static str {
        MONTHS[self.month as usize - 1]
    }

    fn month_abbr(&self) -> &'static str {
        &self.month_name()[..3]
    }

    fn weekday_name(&self) -> &'static str {
        WEEKDAYS[self.weekday()]
    }

    fn weekday_abbr(&self) -> &'static str {
        &self.weekday_name()[..3]
    }

    /// The day with its English ordinal suffix: `1st`, `2nd`, `3rd`, `4th`, `11th`, `22nd`.
    fn ordinal(&self) -> String {
        let d = self.day;
        let suffix = match (d % 10, d % 100) {
            (_, 11..=13) => "th",
            (1, _) => "st",
            (2, _) => "nd",
            (3, _) => "rd",
            _ => "th",
        };
        format!("{d}{suffix}")
    }

    /// The two-digit year.
    fn yy(&self) -> i32 {
        self.year.rem_euclid(100)
    }
}

/// One way of writing a date.
pub struct Format {
    /// How March 4th, 2017 looks in this format.
    pub example: &'static str,
    /// Writes a date in this format (in its written case).
    pub render: fn(&Date) -> String,
}

/// The formats, each shown on Saturday, March 4th, 2017. Formats with letters are also
/// generated in lower and upper case (see [`Case`]).
pub const FORMATS: [Format; 20] = [
    Format { example: "2017-03-04", render: |d| d.iso() },
    Format { example: "03/04/2017", render: |d| format!("{:02}/{:02}/{}", d.month, d.day, d.year) },
    Format { example: "3/4/17", render: |d| format!("{}/{}/{:02}", d.month, d.day, d.yy()) },
    Format { example: "4.3.2017", render: |d| format!("{}.{}.{}", d.day, d.month, d.year) },
    Format { example: "04.03.17", render: |d| format!("{:02}.{:02}.{:02}", d.day, d.month, d.yy()) },
    Format { example: "2017/03/04", render: |d| format!("{}/{:02}/{:02}", d.year, d.month, d.day) },
    Format { example: "20170304", render: |d| format!("{}{:02}{:02}", d.year, d.month, d.day) },
    Format { example: "4 Mar 17", render: |d| format!("{} {} {:02}", d.day, d.month_abbr(), d.yy()) },
    Format { example: "4 March 2017", render: |d| format!("{} {} {}", d.day, d.month_name(), d.year) },
    Format { example: "4-Mar-2017", render: |d| format!("{}-{}-{}", d.day, d.month_abbr(), d.year) },
    Format { example: "March 4, 2017", render: |d| format!("{} {}, {}", d.month_name(), d.day, d.year) },
    Format { example: "Mar 4, 2017", render: |d| format!("{} {}, {}", d.month_abbr(), d.day, d.year) },
    Format {
        example: "Saturday, March 4th 2017",
        render: |d| format!("{}, {} {} {}", d.weekday_name(), d.month_name(), d.ordinal(), d.year),
    },
    Format {
        example: "Sat 4 March 2017",
        render: |d| format!("{} {} {} {}", d.weekday_abbr(), d.day, d.month_name(), d.year),
    },
    Format {
        example: "the 4th of March, 2017",
        render: |d| format!("the {} of {}, {}", d.ordinal(), d.month_name(), d.year),
    },
    Format {
        example: "4th March 2017",
        render: |d| format!("{} {} {}", d.ordinal(), d.month_name(), d.year),
    },
    Format {
        example: "Sat, 04 Mar 2017",
        render: |d| format!("{}, {:02} {} {}", d.weekday_abbr(), d.day, d.month_abbr(), d.year),
    },
    Format { example: "2017 Mar 4", render: |d| format!("{} {} {}", d.year, d.month_abbr(), d.day) },
    Format {
        example: "March the 4th, 2017",
        render: |d| format!("{} the {}, {}", d.month_name(), d.ordinal(), d.year),
    },
    Format {
        example: "Mar. 4th, 17",
        render: |d| format!("{}. {}, {:02}", d.month_abbr(), d.ordinal(), d.yy()),
    },
];

/// The letter case an example is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Case {
    /// As the format writes it (`Saturday, March 4th 2017`).
    Written,
    /// All lower case (`saturday, march 4th 2017`).
    Lower,
    /// All upper case (`SATURDAY, MARCH 4TH 2017`).
    Upper,
}

impl Case {
    fn apply(self, text: String) -> String {
        match self {
            Case::Written => text,
            Case::Lower => text.to_lowercase(),
            Case::Upper => text.to_uppercase(),
        }
    }
}

/// Writes `date` in format `format` (an index into [`FORMATS`]) and `case`.
pub fn render(date: &Date, format: usize, case: Case) -> String {
    case.apply((FORMATS[format].render)(date))
}

/// One input/target pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Example {
    /// The human-written date.
    pub input: String,
    /// Its ISO form `YYYY-MM-DD`.
    pub target: String,
    /// The date.
    pub date: Date,
    /// The index of its format in [`FORMATS`].
    pub format: usize,
}

/// Draws one example: a uniform date in `FIRST_YEAR..=LAST_YEAR`, a uniform format, and for
/// formats with letters the written case (3 in 5), lower (1 in 5) or upper case (1 in 5).
pub fn sample(rng: &mut impl Rng) -> Example {
    let first = Date { year: FIRST_YEAR, month: 1, day: 1 }.days();
    let last = Date { year: LAST_YEAR, month: 12, day: 31 }.days();
    let date = Date::from_days(rng.gen_range(first..=last));
    let format = rng.gen_range(0..FORMATS.len());
    let case = match rng.gen_range(0..5) {
        0 => Case::Lower,
        1 => Case::Upper,
        _ => Case::Written,
    };
    Example { input: render(&date, format, case), target: date.iso(), date, format }
}

/// The three disjoint splits.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Training examples.
    pub train: Vec<Example>,
    /// Validation examples (periodic evaluation during training).
    pub valid: Vec<Example>,
    /// Test examples (the final accuracy).
    pub test: Vec<Example>,
}

impl Dataset {
    /// Generates the splits from `seed`: the test set first, then validation, then training,
    /// each example drawn by [`sample`] and redrawn while its input string was already
    /// drawn (so no string appears twice, within or across splits).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the sizes ask for more distinct strings than can be
    /// drawn, or (a bug) if the splits turn out not to be disjoint.
    pub fn generate(seed: u64, train: usize, valid: usize, test: usize) -> Result<Dataset> {
        let total = train + valid + test;
        if total > 1_000_000 {
            return Err(Error::invalid(
                "seq2seq data",
                format!("at most 1000000 examples, asked for {total}"),
            ));
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let mut seen = HashSet::new();
        let mut draw = |n: usize| {
            let mut split = Vec::with_capacity(n);
            while split.len() < n {
                let example = sample(&mut rng);
                if seen.insert(example.input.clone()) {
                    split.push(example);
                }
            }
            split
        };
        let test = draw(test);
        let valid = draw(valid);
        let train = draw(train);
        let dataset = Dataset { train, valid, test };
        dataset.check_disjoint()?;
        Ok(dataset)
    }

    /// Checks that no input string is in two splits, and that every string has one target.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the first string found in two splits.
    pub fn check_disjoint(&self) -> Result<()> {
        let splits = [("train", &self.train), ("validation", &self.valid), ("test", &self.test)];
        let mut owner: HashMap<&str, &str> = HashMap::new();
        for (name, split) in splits {
            let mine: HashSet<&str> = split.iter().map(|e| e.input.as_str()).collect();
            for input in mine {
                if let Some(other) = owner.insert(input, name) {
                    return Err(Error::invalid(
                        "seq2seq data",
                        format!("{input:?} is in both the {other} and the {name} set"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The padding token id (every vocabulary).
pub const PAD: i64 = 0;
/// The start-of-sequence token id, the decoder's first input.
pub const START: i64 = 1;
/// The end-of-sequence token id, the decoder's last target.
pub const END: i64 = 2;
/// The id of characters the vocabulary does not know.
pub const UNK: i64 = 3;
const SPECIALS: [&str; 4] = ["<pad>", "<s>", "</s>", "<unk>"];

/// A character vocabulary ([`couplet::data::Vocabulary`] over single characters): ids 0–3 are
/// [`PAD`], [`START`], [`END`], [`UNK`], then the characters.
#[derive(Clone, Debug)]
pub struct Vocab {
    vocabulary: Vocabulary,
}

impl Vocab {
    /// A vocabulary of the distinct characters of `chars`, in order, after the four specials.
    pub fn new(chars: &str) -> Vocab {
        let mut tokens: Vec<String> = SPECIALS.iter().map(|s| s.to_string()).collect();
        for c in chars.chars().map(String::from) {
            if !tokens.contains(&c) {
                tokens.push(c);
            }
        }
        let config =
            VocabularyConfig { unknown: Some(SPECIALS[UNK as usize].to_string()), ..Default::default() };
        // Cannot fail: the tokens are distinct (deduplicated above; the specials are several
        // characters long, the rest one) and the unknown token is among them.
        let vocabulary = Vocabulary::from_tokens(tokens, &config).expect("distinct tokens with <unk>");
        Vocab { vocabulary }
    }

    /// The input vocabulary: every character any format can write.
    pub fn input() -> Vocab {
        Vocab::new("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ,./-")
    }

    /// The target vocabulary: digits and `-`.
    pub fn target() -> Vocab {
        Vocab::new("0123456789-")
    }

    /// The number of ids, specials included.
    pub fn size(&self) -> i64 {
        self.vocabulary.size() as i64
    }

    /// The ids of `text`'s characters ([`UNK`] for unknown ones), without start or end tokens.
    pub fn encode(&self, text: &str) -> Vec<i64> {
        let mut buf = [0u8; 4];
        text.chars().map(|c| self.vocabulary.get(c.encode_utf8(&mut buf)).unwrap_or(UNK)).collect()
    }

    /// The text of `ids` up to the first [`END`], skipping the other specials.
    pub fn decode(&self, ids: &[i64]) -> String {
        ids.iter()
            .take_while(|&&id| id != END)
            .filter(|&&id| id >= SPECIALS.len() as i64)
            .filter_map(|&id| self.vocabulary.token(id))
            .collect()
    }

    /// A printable label of one id: the character, or `<pad>`, `<s>`, `</s>`, `<unk>`.
    pub fn label(&self, id: i64) -> String {
        self.vocabulary.token(id).unwrap_or("?").to_string()
    }
}
