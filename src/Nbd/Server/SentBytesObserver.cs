namespace Nbd;

/// <summary>Sees bytes a connection has just sent, in place (a test hook: <see cref="NbdServerOptions.RepliesWritten"/>).</summary>
internal delegate void SentBytesObserver(ReadOnlySpan<byte> sent);
