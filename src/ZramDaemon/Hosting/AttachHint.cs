using System.Net;
using System.Net.Sockets;
using ZramDaemon.Configuration;

namespace ZramDaemon.Hosting;

/// <summary>The one line printed at start: where zramd listens and the commands that attach to it (with TLS when
/// zramd requires it: nbd-client's -enable-tls, the nbds URI schemes; the client's certificates are the admin's).</summary>
internal static class AttachHint
{
    public static string For(IReadOnlyList<string> listeners, ListenAddress? first, string exportName, bool tlsRequired = false)
    {
        string tls = tlsRequired ? " -enable-tls" : string.Empty;
        string s = tlsRequired ? "s" : string.Empty;
        string where = string.Join(", ", listeners);
        if (first is null)
        {
            return $"serving {exportName} on {where}";
        }

        if (first.IsUnix)
        {
            return $"serving {exportName} on {where}; attach with: nbd-client -unix {first.UnixPath} /dev/nbd0 -N {exportName} -b 4096{tls}"
                + $"  or: nbdinfo 'nbd{s}+unix:///{exportName}?socket={first.UnixPath}'";
        }

        IPEndPoint ep = first.EndPoint;
        string host = ep.Address.Equals(IPAddress.Any) ? "127.0.0.1"
            : ep.Address.Equals(IPAddress.IPv6Any) ? "::1"
            : ep.Address.ToString();
        string uriHost = ep.AddressFamily == AddressFamily.InterNetworkV6 ? $"[{host}]" : host;
        return $"serving {exportName} on {where}; attach with: nbd-client {host} {ep.Port} /dev/nbd0 -N {exportName} -b 4096{tls}"
            + $"  or: nbdinfo 'nbd{s}://{uriHost}:{ep.Port}/{exportName}'";
    }
}
