namespace ZramDaemon.Configuration;

/// <summary>The daemon's command-line flags as typed, before validation (null: not given).</summary>
public sealed record CommandLineSettings
{
    public IReadOnlyList<string> Listen { get; init; } = [];

    public string? Size { get; init; }

    public string? Algorithm { get; init; }

    public string? MemLimit { get; init; }

    public string? ConfigPath { get; init; }

    public string? ControlPath { get; init; }
}
