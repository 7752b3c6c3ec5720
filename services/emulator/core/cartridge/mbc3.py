"""MBC3: 7-bit ROM bank, 4 RAM banks and the real-time clock (types 0F-13).

The clock is deterministic so runs are reproducible: at power-on it reads day 0,
00:00:00 and it advances with *emulated* time (4,194,304 cycles per second),
not with the host's clock. Writing its registers sets it; the halt bit (DH bit
6) freezes it. Registers 08-0C (S, M, H, DL, DH) are read from the latched copy
made by writing 00 then 01 to 6000-7FFF. The day counter has 9 bits; past 511
days the carry bit (DH bit 7) is set until written back to 0.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from gbsynth.emulator.core.cartridge.banking import (
    map_ram_bank,
    map_romx_bank,
    reset_bank_registers,
    write_ram_enable,
)
from gbsynth.emulator.core.state import (
    CRAM_BASE,
    CRAM_SIZE,
    MBC_BANK2,
    MBC_HAS_RTC,
    MBC_RAM_ENABLED,
    MBC_ROM_BANK,
    ROM0_BANK,
    RTC_BASE_SECONDS,
    RTC_HALT_SECONDS,
    RTC_LATCH_STATE,
    RTC_LATCHED,
)

CYCLES_PER_SECOND = 4_194_304
RTC_CARRY_DAYS = 512


@njit(cache=True)
def mbc3_update(st: np.ndarray) -> None:
    st[ROM0_BANK] = 0
    map_romx_bank(st, st[MBC_ROM_BANK])
    map_ram_bank(st, st[MBC_BANK2] if st[MBC_BANK2] <= 3 else -1)  # 08-0C: a clock register


@njit(cache=True)
def mbc3_reset(st: np.ndarray) -> None:
    reset_bank_registers(st)
    st[RTC_BASE_SECONDS] = 0
    st[RTC_HALT_SECONDS] = -1
    st[RTC_LATCH_STATE] = 0xFF
    for i in range(5):
        st[RTC_LATCHED + i] = 0
    mbc3_update(st)


@njit(cache=True)
def _rtc_seconds(st: np.ndarray, now: int) -> int:
    if st[RTC_HALT_SECONDS] >= 0:
        return st[RTC_HALT_SECONDS]
    return st[RTC_BASE_SECONDS] + now // CYCLES_PER_SECOND


@njit(cache=True)
def _rtc_registers(st: np.ndarray, now: int, out: np.ndarray) -> None:
    total = _rtc_seconds(st, now)
    days = total // 86400
    out[0] = total % 60
    out[1] = (total // 60) % 60
    out[2] = (total // 3600) % 24
    out[3] = days & 0xFF
    dh = (days >> 8) & 1
    if st[RTC_HALT_SECONDS] >= 0:
        dh |= 0x40
    if days >= RTC_CARRY_DAYS:
        dh |= 0x80
    out[4] = dh


@njit(cache=True)
def mbc3_write(st: np.ndarray, addr: int, value: int, now: int) -> None:
    if addr < 0x2000:
        write_ram_enable(st, value)
    elif addr < 0x4000:
        bank = value & 0x7F
        st[MBC_ROM_BANK] = bank if bank else 1
    elif addr < 0x6000:
        st[MBC_BANK2] = value & 0x0F
    else:
        if st[RTC_LATCH_STATE] == 0 and value == 1 and st[MBC_HAS_RTC]:
            _rtc_registers(st, now, st[RTC_LATCHED : RTC_LATCHED + 5])
        st[RTC_LATCH_STATE] = value
        return
    mbc3_update(st)


@njit(cache=True)
def mbc3_ram_read(st: np.ndarray, mem: np.ndarray, addr: int) -> int:
    """Slow-path read of A000-BFFF: small RAM, or an RTC register."""
    if st[MBC_RAM_ENABLED] == 0:
        return 0xFF
    select = st[MBC_BANK2]
    if select <= 3:
        size = st[CRAM_SIZE]
        if size == 0:
            return 0xFF
        return int(mem[st[CRAM_BASE] + ((select * 0x2000 + (addr & 0x1FFF)) & (size - 1))])
    if 0x08 <= select <= 0x0C and st[MBC_HAS_RTC]:
        masks = (0x3F, 0x3F, 0x1F, 0xFF, 0xC1)
        return int(st[RTC_LATCHED + select - 8]) & masks[select - 8]
    return 0xFF


@njit(cache=True)
def mbc3_ram_write(st: np.ndarray, mem: np.ndarray, addr: int, value: int, now: int) -> None:
    if st[MBC_RAM_ENABLED] == 0:
        return
    select = st[MBC_BANK2]
    if select <= 3:
        size = st[CRAM_SIZE]
        if size:
            mem[st[CRAM_BASE] + ((select * 0x2000 + (addr & 0x1FFF)) & (size - 1))] = value
        return
    if not (0x08 <= select <= 0x0C) or st[MBC_HAS_RTC] == 0:
        return
    total = _rtc_seconds(st, now)
    days = total // 86400
    seconds = total % 60
    minutes = (total // 60) % 60
    hours = (total // 3600) % 24
    day_low = days & 0xFF
    day_high = ((days >> 8) & 1) | (0x40 if st[RTC_HALT_SECONDS] >= 0 else 0)
    if days >= RTC_CARRY_DAYS:
        day_high |= 0x80
    if select == 0x08:
        seconds = value % 60
    elif select == 0x09:
        minutes = value % 60
    elif select == 0x0A:
        hours = value % 24
    elif select == 0x0B:
        day_low = value
    else:
        day_high = value
    days = day_low | ((day_high & 1) << 8)
    if day_high & 0x80:
        days += RTC_CARRY_DAYS
    total = days * 86400 + hours * 3600 + minutes * 60 + seconds
    if day_high & 0x40:
        st[RTC_HALT_SECONDS] = total
    else:
        st[RTC_HALT_SECONDS] = -1
        st[RTC_BASE_SECONDS] = total - now // CYCLES_PER_SECOND
    st[RTC_LATCHED + select - 8] = value
