"""The Game Boy hardware: CPU, bus, APU, PPU, timer, DMA, I/O, cartridges and the machine.

Everything here is numba-compiled emulation on one int64 state array
(``state.py``); ``machine.GameBoy`` is the Python face of it. The emulator
service and tools around it live one level up, in ``gbsynth.emulator``.
"""
