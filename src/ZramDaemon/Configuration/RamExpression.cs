using System.Globalization;

namespace ZramDaemon.Configuration;

/// <summary>
/// zram-generator's size expressions: arithmetic over <c>ram</c> (the machine's MemTotal in MiB) giving MiB,
/// e.g. <c>min(ram / 2, 4096)</c>. Grammar: + - * / with the usual precedence, unary minus, parentheses,
/// min(a, b, ...) and max(a, b, ...), decimal numbers. A number may carry a K, M, G or T suffix
/// (<c>4G</c> = 4096), so that a plain size is also an expression. At most <see cref="MaxNesting"/> levels deep.
/// </summary>
public static class RamExpression
{
    public const string DefaultSize = "min(ram / 2, 4096)";

    /// <summary>Parentheses, min/max calls and unary minus signs inside one another: each is a few frames of this
    /// recursive parser, and a stack overflow cannot be caught (some 20,000 levels kill the process). Far more than any
    /// real size needs.</summary>
    public const int MaxNesting = 100;

    /// <summary>Why an expression that uses <c>ram</c> fails when MemTotal is unknown.</summary>
    public const string RamUnknown = "ram is unknown: /proc/meminfo cannot be read (systemd's ProcSubset=pid hides it); give a plain size such as 4G instead (the device size also takes --size or ZRAMD_SIZE)";

    /// <param name="ramMiB">MemTotal in MiB; null when unknown, which fails only an expression that uses ram.</param>
    public static bool TryEvaluate(string text, double? ramMiB, out double mib, out string error)
    {
        var parser = new Parser(text, ramMiB);
        try
        {
            parser.SkipSpace();
            if (parser.AtEnd)
            {
                throw new FormatException("an expression is required (e.g. ram / 2, 4096, min(ram / 2, 4096))");
            }

            mib = parser.ParseSum();
            parser.SkipSpace();
            if (!parser.AtEnd)
            {
                throw parser.Unexpected();
            }

            if (double.IsNaN(mib) || double.IsInfinity(mib))
            {
                throw new FormatException("the result is not a finite number");
            }

            error = string.Empty;
            return true;
        }
        catch (FormatException e)
        {
            mib = 0;
            error = e.Message;
            return false;
        }
    }

    private ref struct Parser(string text, double? ram)
    {
        private readonly string _text = text;
        private readonly double? _ram = ram;
        private int _pos;
        private int _depth;

        public readonly bool AtEnd => _pos >= _text.Length;

        public void SkipSpace()
        {
            while (_pos < _text.Length && char.IsWhiteSpace(_text[_pos]))
            {
                _pos++;
            }
        }

        public readonly FormatException Unexpected() => AtEnd
            ? new FormatException("the expression ends too early")
            : new FormatException($"unexpected '{_text[_pos]}' at position {_pos + 1}");

        public double ParseSum()
        {
            double value = ParseProduct();
            while (true)
            {
                SkipSpace();
                if (Accept('+'))
                {
                    value += ParseProduct();
                }
                else if (Accept('-'))
                {
                    value -= ParseProduct();
                }
                else
                {
                    return value;
                }
            }
        }

        private double ParseProduct()
        {
            double value = ParseUnary();
            while (true)
            {
                SkipSpace();
                if (Accept('*'))
                {
                    value *= ParseUnary();
                }
                else if (Accept('/'))
                {
                    double divisor = ParseUnary();
                    if (divisor == 0)
                    {
                        throw new FormatException("division by zero");
                    }

                    value /= divisor;
                }
                else
                {
                    return value;
                }
            }
        }

        private double ParseUnary()
        {
            SkipSpace();
            if (!Accept('-'))
            {
                return ParsePrimary();
            }

            Enter();
            double value = -ParseUnary();
            _depth--;
            return value;
        }

        private double ParsePrimary()
        {
            SkipSpace();
            if (Accept('('))
            {
                Enter();
                double inner = ParseSum();
                Expect(')');
                _depth--;
                return inner;
            }

            if (!AtEnd && (char.IsAsciiDigit(_text[_pos]) || _text[_pos] == '.'))
            {
                return ParseNumber();
            }

            int start = _pos;
            while (!AtEnd && char.IsAsciiLetter(_text[_pos]))
            {
                _pos++;
            }

            string word = _text[start.._pos];
            switch (word)
            {
                case "ram":
                    return _ram ?? throw new FormatException(RamUnknown);
                case "min":
                case "max":
                    return ParseCall(word == "min");
                case "":
                    throw Unexpected();
                default:
                    _pos = start;
                    throw new FormatException($"unknown name '{word}' at position {start + 1}: only ram, min() and max() are known");
            }
        }

        private double ParseCall(bool min)
        {
            SkipSpace();
            Expect('(');
            Enter();
            double result = ParseSum();
            SkipSpace();
            while (Accept(','))
            {
                double next = ParseSum();
                result = min ? Math.Min(result, next) : Math.Max(result, next);
                SkipSpace();
            }

            Expect(')');
            _depth--;
            return result;
        }

        /// <summary>One level deeper (a failed parse is abandoned, so only success needs to come back up).</summary>
        private void Enter()
        {
            if (++_depth > MaxNesting)
            {
                throw new FormatException($"nested more than {MaxNesting} levels deep (parentheses, min() and max(), unary minus signs) at position {_pos}");
            }
        }

        private double ParseNumber()
        {
            int start = _pos;
            while (!AtEnd && (char.IsAsciiDigit(_text[_pos]) || _text[_pos] == '.'))
            {
                _pos++;
            }

            string digits = _text[start.._pos];
            if (!double.TryParse(digits, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out double value))
            {
                throw new FormatException($"'{digits}' is not a number");
            }

            // A size suffix converts to MiB; a bare number already is MiB.
            if (!AtEnd)
            {
                double scale = char.ToUpperInvariant(_text[_pos]) switch
                {
                    'K' => 1.0 / 1024,
                    'M' => 1,
                    'G' => 1024,
                    'T' => 1024 * 1024,
                    _ => 0,
                };
                if (scale != 0 && (_pos + 1 >= _text.Length || !char.IsAsciiLetter(_text[_pos + 1])))
                {
                    _pos++;
                    value *= scale;
                }
            }

            return value;
        }

        private bool Accept(char c)
        {
            if (!AtEnd && _text[_pos] == c)
            {
                _pos++;
                return true;
            }

            return false;
        }

        private void Expect(char c)
        {
            SkipSpace();
            if (!Accept(c))
            {
                throw AtEnd
                    ? new FormatException($"missing '{c}' at the end")
                    : new FormatException($"expected '{c}' at position {_pos + 1}, found '{_text[_pos]}'");
            }
        }
    }
}
