"""The sound driver: SM83 code that plays a song table on the Game Boy's four channels.

``DriverInit`` (A = song number) powers the APU, loads the song's wave table into
wave RAM and points each channel at its order list; ``DriverPlay`` is called once
per frame (GBS: the player's VBlank call at 59.7 Hz; ROM: the VBlank handler) and
advances the song. Channel 1 plays the melody, channel 2 harmony or arpeggios,
channel 3 (wave) the bass and channel 4 (noise) the drums, but the driver treats
channels alike apart from their registers.

Song data (see ``song.py`` for the writer)::

    song header   dw tempo : db NR50, NR51
                  dw wave (16 bytes), instruments (8 bytes each), drums (4 bytes each)
                  dw order list of channel 1, 2, 3, 4
    order list    dw pattern : db transposition     ; one entry per bar
                  ...
                  dw 0 : dw entry to loop back to   ; the end
    pattern       $00-$5F note (semitones above C2; the noise channel: a drum number)
                  $60-$7F set the note length to 1-32 rows
                  $80 rest   $81 tie (hold what sounds)   $82 i instrument
                  $83 v envelope   $84 xy arpeggio   $85 s slide into the next note
                  $86 b bend the next note by b (signed) register units a frame
                  $FF end of pattern
    instrument    NRx1 (duty | length), NRx2 (envelope; wave: NR32 level), NRx4 bits
                  ($40: stop at the length), NR10 sweep (channel 1), vibrato delay
                  (frames), vibrato speed (phase step a frame), vibrato shift
                  (amplitude = (2048 - frequency) >> shift, 0: none), unused
    drum          NR42 envelope, NR43 at the hit, NR43 after a few frames, the frames

Tempo: ``tempo``/65536 rows a frame (a 16-bit accumulator carries into a new row), so
any BPM is exact on average (each row starts on a frame). Notes sound until the next event; a rest
turns the channel's DAC off. Vibrato, arpeggios, slides and bends are applied each
frame by rewriting the frequency without a retrigger, and only when it changes.
Effects start the frame after a note starts (that frame plays the note as written).
The driver reads no hardware register, so its writes depend only on the song.
"""

from __future__ import annotations

# -- song data format (shared with song.py) ---------------------------------------------------

NOTE_COUNT = 84
"""Frequency table entries: C2 (note 0) to B8. The wave channel plays an octave lower for the
same register value, so it reads the table 12 entries up and reaches B7 (note 71)."""
LOWEST_MIDI = 36
"""MIDI number of note 0 (C2, 65.4 Hz)."""
WAVE_OCTAVE = 12

FIRST_LENGTH = 0x60
MAX_LENGTH = 32
CMD_REST = 0x80
CMD_TIE = 0x81
CMD_INSTRUMENT = 0x82
CMD_ENVELOPE = 0x83
CMD_ARPEGGIO = 0x84
CMD_SLIDE = 0x85
CMD_BEND = 0x86
CMD_END = 0xFF
MAX_NOTE = FIRST_LENGTH - 1

INSTRUMENT_SIZE = 8
DRUM_SIZE = 4
MAX_INSTRUMENTS = 32
MAX_DRUMS = 64

RAM_START = 0xC000
"""Driver variables live in work RAM from here (GBS players and ROMs both have it)."""


def note_frequency_hz(note: int) -> float:
    return 440.0 * 2.0 ** ((note + LOWEST_MIDI - 69) / 12)


def frequency_register(note: int) -> int:
    """The 11-bit pulse-channel frequency register value of ``note`` (0 = C2)."""
    return int(round(2048 - 131072 / note_frequency_hz(note)))


FREQUENCY_TABLE = tuple(frequency_register(n) for n in range(NOTE_COUNT))


FRAMES_PER_SECOND = 4_194_304 / 70_224
TEMPO_ONE = 0x10000
"""Tempo value of one row a frame."""


def tempo_value(bpm: float, rows_per_beat: int = 4) -> int:
    """The driver's tempo (rows per frame x 65536) closest to ``bpm``."""
    value = round(bpm * rows_per_beat / 60 / FRAMES_PER_SECOND * TEMPO_ONE)
    if not 1 <= value < TEMPO_ONE:
        raise ValueError(f"{bpm} BPM is outside what the driver can play")
    return value


def tempo_bpm(tempo: int, rows_per_beat: int = 4) -> float:
    return tempo / TEMPO_ONE * FRAMES_PER_SECOND * 60 / rows_per_beat


def rows_per_second(tempo: int) -> float:
    return tempo / TEMPO_ONE * FRAMES_PER_SECOND


def _frequency_table_source() -> str:
    rows = []
    for start in range(0, NOTE_COUNT, 12):
        values = ", ".join(f"${v:03X}" for v in FREQUENCY_TABLE[start : start + 12])
        rows.append(f"        dw {values}  ; C{2 + start // 12}-B{2 + start // 12}")
    return "\n".join(rows)


DRIVER_SOURCE = (
    r"""
; ---------------------------------------------------------------------------------------------
; gbsynth sound driver
; ---------------------------------------------------------------------------------------------
rNR10   equ $FF10
rNR30   equ $FF1A
rNR31   equ $FF1B
rNR32   equ $FF1C
rNR33   equ $FF1D
rNR34   equ $FF1E
rNR41   equ $FF20
rNR42   equ $FF21
rNR43   equ $FF22
rNR44   equ $FF23
rNR50   equ $FF24
rNR51   equ $FF25
rNR52   equ $FF26
WAVE_RAM equ $FF30

; channel state: one record per channel, copied to wCur while the channel is processed
CH_ORDER      equ 0     ; 2: next order-list entry
CH_PATTERN    equ 2     ; 2: next pattern byte
CH_TRANSPOSE  equ 4
CH_WAIT       equ 5     ; rows left of the current event
CH_LENGTH     equ 6     ; rows per note, set by length bytes
CH_NOTE       equ 7     ; note sounding, transposed
CH_INSTR      equ 8     ; 2: instrument record
CH_ENV        equ 10    ; envelope (NRx2) or wave level (NR32) of the next notes
CH_FREQ       equ 11    ; 2: frequency before vibrato (slides and bends move it)
CH_TARGET     equ 13    ; 2: where a slide ends
CH_SLIDE      equ 15    ; slide speed, 0: none
CH_BEND       equ 16    ; signed change a frame, 0: none
CH_NEXT_SLIDE equ 17    ; one-shot settings for the next note
CH_NEXT_BEND  equ 18
CH_ARP        equ 19    ; arpeggio: high nibble, low nibble semitones; 0: none
CH_ARP_STEP   equ 20
CH_VIB_WAIT   equ 21    ; frames before vibrato starts
CH_VIB_PHASE  equ 22
CH_VIB_AMP    equ 23    ; vibrato amplitude in register units, 0: none
CH_OUT        equ 24    ; 2: frequency last written
CH_DRUM_WAIT  equ 26    ; frames before the drum's second noise setting
CH_DRUM_POLY  equ 27
CH_SOUNDING   equ 28    ; 0: silent, 1: sounding, 2: started this frame
CH_REG        equ 29    ; low byte of the channel's NRx0 address
CH_INDEX      equ 30    ; 0-3
CH_OCTAVE     equ 31    ; table offset: 12 on the wave channel
CH_SIZE       equ 32

INS_NRX1      equ 0
INS_ENV       equ 1
INS_NRX4      equ 2
INS_SWEEP     equ 3
INS_VIB_DELAY equ 4
INS_VIB_SPEED equ 5
INS_VIB_SHIFT equ 6

FIRST_LENGTH  equ $60
FIRST_COMMAND equ $80
CMD_END       equ $FF
NOTE_COUNT    equ 84
NOISE_CHANNEL equ 3
WAVE_CHANNEL  equ 2

wTempo        equ DRIVER_RAM + 0      ; 2: rows a frame x 65536
wTempoAcc     equ DRIVER_RAM + 2      ; 2
wRowTick      equ DRIVER_RAM + 4      ; $FF in frames that start a row
wInstruments  equ DRIVER_RAM + 5      ; 2
wDrums        equ DRIVER_RAM + 7      ; 2
wHeader       equ DRIVER_RAM + 9      ; 2: song header read pointer during init
wChannels     equ DRIVER_RAM + $10    ; 4 records
wCur          equ wChannels + 4 * CH_SIZE
wEnd          equ wCur + CH_SIZE

        section "driver", DRIVER_ORG
        assert LOW(wChannels) + 5 * CH_SIZE <= $100, "channel records must not cross a page"

; DriverInit: A = song number (0 = the first). Interrupts must be off.
DriverInit:
        ld e, a
        ld hl, DRIVER_RAM
        ld bc, wEnd - DRIVER_RAM
.clear:
        xor a
        ld [hl+], a
        dec bc
        ld a, b
        or c
        jr nz, .clear
        ld d, 0
        ld hl, SongTable
        add hl, de
        add hl, de
        ld a, [hl+]
        ld h, [hl]
        ld l, a
        ld a, $80
        ldh [rNR52], a          ; sound on
        ld a, [hl+]             ; the accumulator starts at -tempo: the first frame
        ld [wTempo], a          ; starts the first row
        cpl
        add 1
        ld [wTempoAcc], a
        ld a, [hl+]
        ld [wTempo + 1], a
        cpl
        adc 0
        ld [wTempoAcc + 1], a
        ld a, [hl+]
        ldh [rNR50], a
        ld a, [hl+]
        ldh [rNR51], a
        xor a
        ldh [rNR10], a          ; no sweep until an instrument asks for one
        ldh [rNR30], a          ; wave DAC off while wave RAM is loaded
        ld a, [hl+]
        ld e, a
        ld a, [hl+]
        ld d, a
        push hl
        ld hl, WAVE_RAM
        ld c, 16
.wave:
        ld a, [de]
        inc de
        ld [hl+], a
        dec c
        jr nz, .wave
        pop hl
        ld a, [hl+]
        ld [wInstruments], a
        ld a, [hl+]
        ld [wInstruments + 1], a
        ld a, [hl+]
        ld [wDrums], a
        ld a, [hl+]
        ld [wDrums + 1], a
        ld a, l
        ld [wHeader], a
        ld a, h
        ld [wHeader + 1], a
        ld b, 0
.channel:
        ld hl, wCur
        ld c, CH_SIZE
        xor a
.zero:
        ld [hl+], a
        dec c
        jr nz, .zero
        ld a, [wHeader]
        ld l, a
        ld a, [wHeader + 1]
        ld h, a
        ld a, [hl+]
        ld [wCur + CH_ORDER], a
        ld a, [hl+]
        ld [wCur + CH_ORDER + 1], a
        ld a, l
        ld [wHeader], a
        ld a, h
        ld [wHeader + 1], a
        ld a, LOW(EmptyPattern)   ; the first row reads the first order entry
        ld [wCur + CH_PATTERN], a
        ld a, HIGH(EmptyPattern)
        ld [wCur + CH_PATTERN + 1], a
        ld a, 1
        ld [wCur + CH_WAIT], a
        ld [wCur + CH_LENGTH], a
        ld a, b
        ld [wCur + CH_INDEX], a
        ld e, b
        ld d, 0
        ld hl, ChannelRegisters
        add hl, de
        ld a, [hl]
        ld [wCur + CH_REG], a
        ld hl, ChannelOctaves
        add hl, de
        ld a, [hl]
        ld [wCur + CH_OCTAVE], a
        ld a, [wInstruments]
        ld [wCur + CH_INSTR], a
        ld a, [wInstruments + 1]
        ld [wCur + CH_INSTR + 1], a
        push bc
        call StoreChannel
        pop bc
        inc b
        ld a, b
        cp 4
        jr nz, .channel
        ret

; DriverPlay: once a frame.
DriverPlay:
        ld a, [wTempo]
        ld b, a
        ld a, [wTempoAcc]
        add b
        ld [wTempoAcc], a
        ld a, [wTempo + 1]
        ld b, a
        ld a, [wTempoAcc + 1]
        adc b
        ld [wTempoAcc + 1], a
        sbc a                   ; $FF when the accumulator carried: a new row
        ld [wRowTick], a
        ld b, 0
.channel:
        push bc
        call LoadChannel
        call UpdateChannel
        pop bc
        push bc
        call StoreChannel
        pop bc
        inc b
        ld a, b
        cp 4
        jr nz, .channel
        ret

; ---- channel records ----------------------------------------------------------------------
; ChannelSlot: B = channel -> HL = its record
ChannelSlot:
        ld a, b
        rrca                    ; B * 32 for B < 8
        rrca
        rrca
        add LOW(wChannels)
        ld l, a
        ld h, HIGH(wChannels)
        ret

LoadChannel:
        call ChannelSlot
        ld de, wCur
        jr CopyChannel

StoreChannel:
        call ChannelSlot
        ld d, h
        ld e, l
        ld hl, wCur
CopyChannel:                    ; CH_SIZE bytes from HL to DE
        ld c, CH_SIZE
.loop:
        ld a, [hl+]
        ld [de], a
        inc de
        dec c
        jr nz, .loop
        ret

; InstrumentField: A = field offset -> A = that byte of the current instrument (HL lost)
InstrumentField:
        ld l, a
        ld a, [wCur + CH_INSTR]
        add l
        ld l, a
        ld a, [wCur + CH_INSTR + 1]
        adc 0
        ld h, a
        ld a, [hl]
        ret

; NoteFrequency: A = note -> DE = frequency register value (the wave channel an octave up)
NoteFrequency:
        ld hl, wCur + CH_OCTAVE
        add [hl]
        cp NOTE_COUNT
        jr c, .inRange
        ld a, NOTE_COUNT - 1
.inRange:
        ld l, a
        ld h, 0
        add hl, hl
        ld de, FrequencyTable
        add hl, de
        ld a, [hl+]
        ld e, a
        ld d, [hl]
        ret

; ClampFrequency: HL (signed) -> HL within 0..$7FF
ClampFrequency:
        bit 7, h
        jr z, .notNegative
        ld hl, 0
        ret
.notNegative:
        ld a, h
        cp 8
        ret c
        ld hl, $07FF
        ret

; ---- rows: the pattern reader ---------------------------------------------------------------
UpdateChannel:
        ld a, [wRowTick]
        and a
        jr z, .effects
        ld hl, wCur + CH_WAIT
        dec [hl]
        call z, ReadPattern
.effects:
        ld a, [wCur + CH_SOUNDING]
        cp 2
        jr nz, .running
        dec a                   ; effects start the frame after a note starts
        ld [wCur + CH_SOUNDING], a
        ret
.running:
        ld a, [wCur + CH_INDEX]
        cp NOISE_CHANNEL
        jp z, DrumEffects
        jp ToneEffects

; ReadPattern: runs commands up to the next note, rest or tie.
ReadPattern:
        ld a, [wCur + CH_PATTERN]
        ld l, a
        ld a, [wCur + CH_PATTERN + 1]
        ld h, a
.next:
        ld a, [hl+]
        cp FIRST_LENGTH
        jr c, .note
        cp FIRST_COMMAND
        jr c, .length
        cp CMD_END
        jr z, .endOfPattern
        sub FIRST_COMMAND
        cp (CommandTable.end - CommandTable) / 2
        jr nc, .endOfPattern    ; not a command: skip the rest of the pattern
        add a
        ld e, a
        ld d, 0
        push hl
        ld hl, CommandTable
        add hl, de
        ld a, [hl+]
        ld h, [hl]
        ld l, a
        pop de
        push hl                 ; the handler's address...
        ld h, d
        ld l, e
        ret                     ; ...is where this returns to, with HL = the pattern
.length:
        sub FIRST_LENGTH - 1
        ld [wCur + CH_LENGTH], a
        jr .next
.note:
        ld b, a
        call .endEvent
        ld a, b
        jp NoteOn
.endOfPattern:
        call NextOrderEntry
        jr .next
.endEvent:                      ; save the pattern position; the event lasts CH_LENGTH rows
        ld a, l
        ld [wCur + CH_PATTERN], a
        ld a, h
        ld [wCur + CH_PATTERN + 1], a
        ld a, [wCur + CH_LENGTH]
        ld [wCur + CH_WAIT], a
        ret

; NextOrderEntry: -> HL = the next pattern of the order list (looping at its end)
NextOrderEntry:
        ld a, [wCur + CH_ORDER]
        ld l, a
        ld a, [wCur + CH_ORDER + 1]
        ld h, a
        ld a, [hl+]
        ld e, a
        ld a, [hl+]
        ld d, a
        or e
        jr nz, .found
        ld a, [hl+]             ; the end: the next word is the entry to loop back to
        ld h, [hl]
        ld l, a
        ld a, [hl+]
        ld e, a
        ld a, [hl+]
        ld d, a
.found:
        ld a, [hl+]
        ld [wCur + CH_TRANSPOSE], a
        ld a, l
        ld [wCur + CH_ORDER], a
        ld a, h
        ld [wCur + CH_ORDER + 1], a
        ld h, d
        ld l, e
        ret

; Command handlers: HL points after the command byte. Those that end an event return
; (to UpdateChannel); the others go on reading.
CommandTable:
        dw CmdRest, CmdTie, CmdInstrument, CmdEnvelope, CmdArpeggio, CmdSlide, CmdBend
.end:

CmdRest:
        call ReadPattern.endEvent
        jp NoteOff

CmdTie:
        jp ReadPattern.endEvent

CmdInstrument:
        ld a, [hl+]
        push hl
        ld l, a
        ld h, 0
        add hl, hl
        add hl, hl
        add hl, hl              ; 8 bytes an instrument
        ld a, [wInstruments]
        ld e, a
        ld a, [wInstruments + 1]
        ld d, a
        add hl, de
        ld a, l
        ld [wCur + CH_INSTR], a
        ld a, h
        ld [wCur + CH_INSTR + 1], a
        inc hl
        ld a, [hl]              ; INS_ENV: the instrument's own envelope
        ld [wCur + CH_ENV], a
        pop hl
        jp ReadPattern.next

CmdEnvelope:
        ld a, [hl+]
        ld [wCur + CH_ENV], a
        jp ReadPattern.next

CmdArpeggio:
        ld a, [hl+]
        ld [wCur + CH_ARP], a
        jp ReadPattern.next

CmdSlide:
        ld a, [hl+]
        ld [wCur + CH_NEXT_SLIDE], a
        jp ReadPattern.next

CmdBend:
        ld a, [hl+]
        ld [wCur + CH_NEXT_BEND], a
        jp ReadPattern.next

; ---- notes ------------------------------------------------------------------------------
; NoteOn: A = the pattern's note byte
NoteOn:
        ld b, a
        ld a, [wCur + CH_INDEX]
        cp NOISE_CHANNEL
        jp z, DrumOn
        ld a, [wCur + CH_TRANSPOSE]
        add b
        ld [wCur + CH_NOTE], a
        call NoteFrequency      ; DE = the note's frequency
        ld a, e
        ld [wCur + CH_TARGET], a
        ld a, d
        ld [wCur + CH_TARGET + 1], a
        ld a, [wCur + CH_NEXT_BEND]
        ld [wCur + CH_BEND], a
        ld a, [wCur + CH_NEXT_SLIDE]
        ld [wCur + CH_SLIDE], a
        ld c, a
        xor a
        ld [wCur + CH_NEXT_BEND], a
        ld [wCur + CH_NEXT_SLIDE], a
        ld [wCur + CH_ARP_STEP], a
        ld [wCur + CH_VIB_PHASE], a
        ld a, c                 ; a slide starts from the pitch sounding now
        and a
        jr z, .fromNote
        ld a, [wCur + CH_SOUNDING]
        and a
        jr nz, .vibrato
        xor a                   ; nothing sounds: nothing to slide from
        ld [wCur + CH_SLIDE], a
.fromNote:
        ld a, e
        ld [wCur + CH_FREQ], a
        ld a, d
        ld [wCur + CH_FREQ + 1], a
.vibrato:                       ; amplitude: (2048 - frequency) >> shift, so the same in cents
        ld a, INS_VIB_DELAY
        call InstrumentField
        ld [wCur + CH_VIB_WAIT], a
        ld a, INS_VIB_SHIFT
        call InstrumentField
        and a
        jr z, .setAmplitude
        ld c, a
        xor a
        sub e
        ld l, a
        ld a, 8
        sbc d
        ld h, a                 ; HL = $800 - DE
.shift:
        srl h
        rr l
        dec c
        jr nz, .shift
        ld a, h
        and a
        ld a, l
        jr z, .setAmplitude
        ld a, $FF
.setAmplitude:
        ld [wCur + CH_VIB_AMP], a
        ; fall through to Trigger

; Trigger: start the channel's note at CH_FREQ with the instrument and envelope
Trigger:
        ld a, 2
        ld [wCur + CH_SOUNDING], a
        ld a, [wCur + CH_FREQ]
        ld [wCur + CH_OUT], a
        ld e, a
        ld a, [wCur + CH_FREQ + 1]
        ld [wCur + CH_OUT + 1], a
        ld d, a
        ld a, [wCur + CH_INDEX]
        cp WAVE_CHANNEL
        jr z, .wave
        and a
        jr nz, .pulse
        ld a, INS_SWEEP
        call InstrumentField
        ldh [rNR10], a
.pulse:
        ld a, [wCur + CH_REG]
        inc a
        ld c, a
        ld a, INS_NRX1
        call InstrumentField
        ldh [c], a              ; NRx1: duty and length
        inc c
        ld a, [wCur + CH_ENV]
        ldh [c], a              ; NRx2: envelope
        inc c
        ld a, e
        ldh [c], a              ; NRx3
        inc c
        ld a, INS_NRX4
        call InstrumentField
        or d
        or $80
        ldh [c], a              ; NRx4: trigger
        ret
.wave:
        xor a                   ; DAC off and on: retriggering a playing wave channel
        ldh [rNR30], a          ; corrupts wave RAM on the DMG
        ld a, $80
        ldh [rNR30], a
        ld a, INS_NRX1
        call InstrumentField
        ldh [rNR31], a
        ld a, [wCur + CH_ENV]
        ldh [rNR32], a
        ld a, e
        ldh [rNR33], a
        ld a, INS_NRX4
        call InstrumentField
        or d
        or $80
        ldh [rNR34], a
        ret

; NoteOff: silence the channel (its DAC off)
NoteOff:
        xor a
        ld [wCur + CH_SOUNDING], a
        ld [wCur + CH_DRUM_WAIT], a
        ld a, [wCur + CH_INDEX]
        cp WAVE_CHANNEL
        jr nz, .envelope
        xor a
        ldh [rNR30], a
        ret
.envelope:
        ld a, [wCur + CH_REG]
        add 2
        ld c, a
        xor a
        ldh [c], a              ; NRx2 = 0
        ret

; DrumOn: B = drum number
DrumOn:
        ld a, b
        add a
        add a
        ld e, a
        ld d, 0
        ld a, [wDrums]
        ld l, a
        ld a, [wDrums + 1]
        ld h, a
        add hl, de
        push hl
        ld a, 2
        ld [wCur + CH_SOUNDING], a
        ld a, INS_NRX1
        call InstrumentField
        ldh [rNR41], a
        pop hl
        ld a, [hl+]
        ldh [rNR42], a
        ld a, [hl+]
        ldh [rNR43], a
        ld a, [hl+]
        ld [wCur + CH_DRUM_POLY], a
        ld a, [hl]
        ld [wCur + CH_DRUM_WAIT], a
        ld a, INS_NRX4
        call InstrumentField
        or $80
        ldh [rNR44], a
        ret

; ---- frames: effects ----------------------------------------------------------------------
DrumEffects:
        ld a, [wCur + CH_DRUM_WAIT]
        and a
        ret z
        dec a
        ld [wCur + CH_DRUM_WAIT], a
        ret nz
        ld a, [wCur + CH_DRUM_POLY]
        ldh [rNR43], a          ; the drum's second noise setting (a kick's drop, say)
        ret

ToneEffects:
        ld a, [wCur + CH_SOUNDING]
        and a
        ret z
        ld a, [wCur + CH_ARP]
        and a
        jr z, .glide
        ld b, a                 ; arpeggio: note, +high nibble, +low nibble, again
        ld a, [wCur + CH_ARP_STEP]
        inc a
        cp 3
        jr c, .stepped
        xor a
.stepped:
        ld [wCur + CH_ARP_STEP], a
        ld c, a
        ld a, b
        swap a
        dec c
        jr z, .nibble           ; step 1: high nibble
        swap a
        dec c
        jr z, .nibble           ; step 2: low nibble
        xor a                   ; step 0: the note itself
.nibble:
        and $0F
        ld b, a
        ld a, [wCur + CH_NOTE]
        add b
        call NoteFrequency
        jr .vibrato
.glide:
        ld a, [wCur + CH_FREQ]
        ld e, a
        ld a, [wCur + CH_FREQ + 1]
        ld d, a
        ld a, [wCur + CH_SLIDE]
        and a
        jr z, .bend
        ld c, a
        ld a, [wCur + CH_TARGET]
        ld l, a
        ld a, [wCur + CH_TARGET + 1]
        ld h, a
        ld a, e                 ; below the target: up, else down
        sub l
        ld a, d
        sbc h
        jr c, .up
        ld a, e
        sub c
        ld e, a
        ld a, d
        sbc 0
        ld d, a
        jr c, .arrived
        ld a, e
        sub l
        ld a, d
        sbc h
        jr nc, .slid
        jr .arrived
.up:
        ld a, e
        add c
        ld e, a
        ld a, d
        adc 0
        ld d, a
        ld a, l
        sub e
        ld a, h
        sbc d
        jr nc, .slid
.arrived:
        ld d, h
        ld e, l
        xor a
        ld [wCur + CH_SLIDE], a
.slid:
        ld a, e
        ld [wCur + CH_FREQ], a
        ld a, d
        ld [wCur + CH_FREQ + 1], a
.bend:
        ld a, [wCur + CH_BEND]
        and a
        jr z, .vibrato
        ld l, a
        ld h, 0
        bit 7, l
        jr z, .bendUp
        dec h                   ; sign-extend
.bendUp:
        add hl, de
        call ClampFrequency
        ld d, h
        ld e, l
        ld a, e
        ld [wCur + CH_FREQ], a
        ld a, d
        ld [wCur + CH_FREQ + 1], a
.vibrato:                       ; DE = frequency before vibrato
        ld a, [wCur + CH_VIB_AMP]
        and a
        jr z, .output
        ld b, a
        ld a, [wCur + CH_VIB_WAIT]
        and a
        jr z, .wobble
        dec a
        ld [wCur + CH_VIB_WAIT], a
        jr .output
.wobble:
        ld a, INS_VIB_SPEED
        call InstrumentField
        ld c, a
        ld a, [wCur + CH_VIB_PHASE]
        add c
        ld [wCur + CH_VIB_PHASE], a
        swap a                  ; phase / 32: one of eight steps of the shape
        rrca
        and 7
        ld l, a
        ld h, 0
        push de
        ld de, VibratoShape
        add hl, de
        pop de
        ld a, [hl]
        and a
        jr z, .output
        ld c, a
        ld a, b
        bit 0, c
        jr z, .full
        srl a                   ; half amplitude
.full:
        ld l, a
        ld h, 0
        bit 7, c
        jr z, .offset
        xor a                   ; downward: HL = -HL
        sub l
        ld l, a
        sbc a
        ld h, a
.offset:
        add hl, de
        call ClampFrequency
        ld d, h
        ld e, l
.output:                        ; write the frequency when it changed (no retrigger)
        ld a, [wCur + CH_OUT]
        cp e
        jr nz, .write
        ld a, [wCur + CH_OUT + 1]
        cp d
        ret z
.write:
        ld a, e
        ld [wCur + CH_OUT], a
        ld a, d
        ld [wCur + CH_OUT + 1], a
        ld a, [wCur + CH_REG]
        add 3
        ld c, a
        ld a, e
        ldh [c], a              ; NRx3
        inc c
        ld a, INS_NRX4
        call InstrumentField
        or d
        ldh [c], a              ; NRx4 without the trigger bit
        ret

; ---- tables -------------------------------------------------------------------------------
EmptyPattern:
        db CMD_END
ChannelRegisters:
        db $10, $15, $1A, $1F   ; NR10, (NR20), NR30, (NR40)
ChannelOctaves:
        db 0, 0, 12, 0
VibratoShape:                   ; bit 0: half amplitude, bit 7: downward
        db 0, 1, 2, 1, 0, $81, $82, $81
FrequencyTable:
"""
    + _frequency_table_source()
    + "\n"
)
"""The driver's source. Needs DRIVER_ORG, DRIVER_RAM and a ``SongTable`` label (``dw`` per
song) from the song data assembled with it."""
