/*
 * The SIGILL control of packaging/test.sh: proof that `qemu-arm -cpu arm1176` refuses
 * what a Pi Zero or Pi 1 cannot execute, so that regd running there means something.
 *
 * No C library (Debian's armhf libc is itself ARMv7 and would die before main): it
 * writes a line with code an ARM1176 runs, then executes MOVW, an ARMv6T2/ARMv7
 * instruction the ARM1176 lacks, then writes a second line and exits 0. On an ARMv7
 * CPU both lines appear; on the ARM1176 only the first, then SIGILL. The instruction
 * scan of test.sh must also find that MOVW here.
 *
 * Built by test.sh: arm-linux-gnueabihf-gcc -marm -march=armv7-a -O2 -static
 * -nostdlib -ffreestanding -fno-stack-protector.
 */

static long syscall3(long number, long a, long b, long c) {
    register long r7 __asm__("r7") = number;
    register long r0 __asm__("r0") = a;
    register long r1 __asm__("r1") = b;
    register long r2 __asm__("r2") = c;
    __asm__ volatile("svc #0" : "+r"(r0) : "r"(r7), "r"(r1), "r"(r2) : "memory");
    return r0;
}

static void say(const char *line, long length) {
    syscall3(4 /* write */, 1, (long)line, length);
}

void _start(void) {
    unsigned value;
    say("ARMv6 code ran\n", 15);
    __asm__ volatile("movw %0, #0x7777" : "=r"(value));
    say("ARMv7 code ran\n", 15);
    syscall3(1 /* exit */, value == 0x7777 ? 0 : 1, 0, 0);
    for (;;) {
    }
}
