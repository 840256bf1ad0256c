using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Net;

namespace ZramDaemon.Configuration;

/// <summary>Where the daemon serves NBD: <c>unix:PATH</c> or <c>tcp:HOST:PORT</c> (HOST an IP address or
/// localhost; IPv6 in brackets; PORT defaults to 10809, NBD's IANA port). Without a HOST (<c>tcp:</c>,
/// <c>tcp:PORT</c>, <c>tcp::PORT</c>) it is loopback: reaching other hosts takes an address written out.</summary>
public sealed record ListenAddress
{
    public const int DefaultNbdPort = 10809;

    public const string Usage = "use unix:PATH or tcp:HOST:PORT (HOST an IP address, [IPv6] or localhost)";

    private ListenAddress(string? unixPath, IPEndPoint? endPoint)
    {
        UnixPath = unixPath;
        EndPoint = endPoint;
    }

    /// <summary>The socket file (absolute), or null for TCP.</summary>
    public string? UnixPath { get; }

    /// <summary>The TCP end point, or null for a Unix socket.</summary>
    public IPEndPoint? EndPoint { get; }

    [MemberNotNullWhen(true, nameof(UnixPath))]
    [MemberNotNullWhen(false, nameof(EndPoint))]
    public bool IsUnix => UnixPath is not null;

    public static ListenAddress Unix(string path) => new(System.IO.Path.GetFullPath(path), null);

    public static ListenAddress Tcp(IPEndPoint endPoint) => new(null, endPoint);

    public static bool TryParse(string? text, [NotNullWhen(true)] out ListenAddress? address, out string error)
    {
        address = null;
        error = string.Empty;
        string s = text?.Trim() ?? string.Empty;
        if (s.StartsWith("unix:", StringComparison.Ordinal))
        {
            string path = s[5..];
            if (path.Length == 0 || path.EndsWith('/'))
            {
                error = "a Unix socket needs a file path, e.g. unix:/run/zramd/zramd.sock";
                return false;
            }

            if (!TryGetSocketPath(path, out string? full, out error))
            {
                return false;
            }

            address = new ListenAddress(full, null);
            return true;
        }

        if (s.StartsWith("tcp:", StringComparison.Ordinal))
        {
            return TryParseTcp(s[4..], out address, out error);
        }

        error = Usage;
        return false;
    }

    /// <summary>The absolute form of <paramref name="path"/>, if a Unix socket can be bound there: the NBD sockets,
    /// the control socket, and the daemon's sockets the verbs connect to.</summary>
    public static bool TryGetSocketPath(string path, [NotNullWhen(true)] out string? fullPath, out string error)
    {
        if (!FilePath.TryGetFullPath(path, out fullPath, out error))
        {
            return false;
        }

        // sun_path holds 108 bytes including the terminating NUL.
        if (System.Text.Encoding.UTF8.GetByteCount(fullPath) > 107)
        {
            fullPath = null;
            error = "the socket path is longer than the 107 bytes a Unix socket address holds";
            return false;
        }

        return true;
    }

    private static bool TryParseTcp(string hostPort, [NotNullWhen(true)] out ListenAddress? address, out string error)
    {
        address = null;
        error = string.Empty;

        // No host: loopback. A bare number is a port (IPAddress would take it for an IPv4 address in decimal).
        if (hostPort.Length == 0 || hostPort.All(char.IsAsciiDigit) || (hostPort.StartsWith(':') && hostPort.IndexOf(':', 1) < 0))
        {
            hostPort = "127.0.0.1" + (hostPort.Length == 0 || hostPort.StartsWith(':') ? hostPort : ":" + hostPort);
        }
        string host;
        string? port = null;
        if (hostPort.StartsWith('['))
        {
            int close = hostPort.IndexOf(']', StringComparison.Ordinal);
            if (close < 0)
            {
                error = "an IPv6 address needs its closing ']'";
                return false;
            }

            host = hostPort[1..close];
            string rest = hostPort[(close + 1)..];
            if (rest.Length > 0)
            {
                if (rest[0] != ':')
                {
                    error = Usage;
                    return false;
                }

                port = rest[1..];
            }
        }
        else
        {
            int colon = hostPort.LastIndexOf(':');
            if (colon >= 0 && hostPort.IndexOf(':', StringComparison.Ordinal) != colon)
            {
                error = "put an IPv6 address in brackets, e.g. tcp:[::1]:10809";
                return false;
            }

            host = colon < 0 ? hostPort : hostPort[..colon];
            port = colon < 0 ? null : hostPort[(colon + 1)..];
        }

        IPAddress ip;
        if (host.Equals("localhost", StringComparison.OrdinalIgnoreCase))
        {
            ip = IPAddress.Loopback;
        }
        else if (!IPAddress.TryParse(host, out ip!))
        {
            error = host.Length == 0 ? $"the host is missing: {Usage}" : $"'{host}' is not an IP address: {Usage}";
            return false;
        }

        int portNumber = DefaultNbdPort;
        if (port is not null
            && (!int.TryParse(port, NumberStyles.None, CultureInfo.InvariantCulture, out portNumber) || portNumber is < 1 or > 65535))
        {
            error = $"'{port}' is not a port: use a number from 1 to 65535";
            return false;
        }

        address = new ListenAddress(null, new IPEndPoint(ip, portNumber));
        return true;
    }

    public override string ToString() => IsUnix ? "unix:" + UnixPath : "tcp:" + EndPoint;
}
