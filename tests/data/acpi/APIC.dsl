
[000h 0000   4]                    Signature : "APIC"    [Multiple APIC Description Table (MADT)]
[004h 0004   4]                 Table Length : 0000004E
[008h 0008   1]                     Revision : 05
[009h 0009   1]                     Checksum : 4B
[00Ah 0010   6]                       Oem ID : "UFVM  "
[010h 0016   8]                 Oem Table ID : "UFVM    "
[018h 0024   4]                 Oem Revision : 00000001
[01Ch 0028   4]              Asl Compiler ID : "UFVM"
[020h 0032   4]        Asl Compiler Revision : 00000001

[024h 0036   4]           Local Apic Address : FEE00000
[028h 0040   4]        Flags (decoded below) : 00000000
                         PC-AT Compatibility : 0

[02Ch 0044   1]                Subtable Type : 00 [Processor Local APIC]
[02Dh 0045   1]                       Length : 08
[02Eh 0046   1]                 Processor ID : 00
[02Fh 0047   1]                Local Apic ID : 00
[030h 0048   4]        Flags (decoded below) : 00000001
                           Processor Enabled : 1
                      Runtime Online Capable : 0

[034h 0052   1]                Subtable Type : 00 [Processor Local APIC]
[035h 0053   1]                       Length : 08
[036h 0054   1]                 Processor ID : 01
[037h 0055   1]                Local Apic ID : 01
[038h 0056   4]        Flags (decoded below) : 00000001
                           Processor Enabled : 1
                      Runtime Online Capable : 0

[03Ch 0060   1]                Subtable Type : 01 [I/O APIC]
[03Dh 0061   1]                       Length : 0C
[03Eh 0062   1]                  I/O Apic ID : 02
[03Fh 0063   1]                     Reserved : 00
[040h 0064   4]                      Address : FEC00000
[044h 0068   4]                    Interrupt : 00000000

[048h 0072   1]                Subtable Type : 04 [Local APIC NMI]
[049h 0073   1]                       Length : 06
[04Ah 0074   1]                 Processor ID : FF
[04Bh 0075   2]        Flags (decoded below) : 0000
                                    Polarity : 0
                                Trigger Mode : 0
[04Dh 0077   1]         Interrupt Input LINT : 01

Raw Table Data: Length 78 (0x4E)

    0000: 41 50 49 43 4E 00 00 00 05 4B 55 46 56 4D 20 20  // APICN....KUFVM  
    0010: 55 46 56 4D 20 20 20 20 01 00 00 00 55 46 56 4D  // UFVM    ....UFVM
    0020: 01 00 00 00 00 00 E0 FE 00 00 00 00 00 08 00 00  // ................
    0030: 01 00 00 00 00 08 01 01 01 00 00 00 01 0C 02 00  // ................
    0040: 00 00 C0 FE 00 00 00 00 04 06 FF 00 00 01        // ..............
