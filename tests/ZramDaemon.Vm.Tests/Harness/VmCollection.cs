namespace ZramDaemon.Vm.Tests.Harness;

/// <summary>Every test that boots the VM shares one image build and runs one at a time: each boot is a
/// single-CPU software emulation, and two at once would only slow both on a 2-core machine.</summary>
[CollectionDefinition(Name)]
public sealed class VmCollection : ICollectionFixture<VmFixture>
{
    public const string Name = "vm";
}

/// <summary>The base image (tools, modules, guest scripts), built once per test run.</summary>
public sealed class VmFixture
{
    private readonly Lazy<VmImage> _image = new(() => VmImage.Build("base"));

    public VmImage Image => _image.Value;
}
