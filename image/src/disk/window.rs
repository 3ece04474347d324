//! A byte range of a disk (a partition) seen as a stream of its own.
//!
//! [`Window`] gives a file system library (`fatfs`) a `Read + Write + Seek` view of one
//! partition of an image file or a block device: offsets are relative to the
//! partition's start, reads stop at its end and writes past it fail, so a bug in the
//! file system code can never touch another partition.
//!
//! When the disk is a freshly created sparse file, [`Window::sparse`] keeps it sparse:
//! a write of zeros over bytes that already read as zero is skipped (the hole stays a
//! hole), everything else is written as usual.

use std::io::{self, Read, Seek, SeekFrom, Write};

/// The largest chunk compared at once when skipping zero writes, in bytes.
const COMPARE_CHUNK_BYTES: usize = 64 * 1024;

/// `len_bytes` bytes of `inner` starting at `start_bytes`, as a stream.
#[derive(Debug)]
pub struct Window<F> {
    inner: F,
    start_bytes: u64,
    len_bytes: u64,
    pos_bytes: u64,
    skip_zero_writes: bool,
}

impl<F: Read + Write + Seek> Window<F> {
    /// A window over `inner[start_bytes .. start_bytes + len_bytes]`.
    pub fn new(inner: F, start_bytes: u64, len_bytes: u64) -> Self {
        Self {
            inner,
            start_bytes,
            len_bytes,
            pos_bytes: 0,
            skip_zero_writes: false,
        }
    }

    /// Like [`Window::new`], but writes of zeros over bytes that already read as zero
    /// are skipped, so a sparse file stays sparse.
    pub fn sparse(inner: F, start_bytes: u64, len_bytes: u64) -> Self {
        Self {
            skip_zero_writes: true,
            ..Self::new(inner, start_bytes, len_bytes)
        }
    }

    /// The window's length in bytes.
    pub fn len_bytes(&self) -> u64 {
        self.len_bytes
    }

    /// Gives the underlying stream back.
    pub fn into_inner(self) -> F {
        self.inner
    }

    /// The bytes left between the position and the end, capped at `want`.
    fn remaining(&self, want: usize) -> usize {
        let left = self.len_bytes.saturating_sub(self.pos_bytes);
        usize::try_from(left).map_or(want, |left| left.min(want))
    }

    /// Seeks the inner stream to the window's position.
    fn seek_inner(&mut self) -> io::Result<()> {
        let abs = self
            .start_bytes
            .checked_add(self.pos_bytes)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "offset overflow"))?;
        self.inner.seek(SeekFrom::Start(abs))?;
        Ok(())
    }

    /// Whether `len` bytes at the current position already read as zero.
    fn already_zero(&mut self, len: usize) -> io::Result<bool> {
        self.seek_inner()?;
        let mut scratch = vec![0u8; len.min(COMPARE_CHUNK_BYTES)];
        let mut left = len;
        while left > 0 {
            let n = left.min(scratch.len());
            let buf = &mut scratch[..n];
            self.inner.read_exact(buf)?;
            if buf.iter().any(|&b| b != 0) {
                return Ok(false);
            }
            left -= n;
        }
        Ok(true)
    }
}

impl<F: Read + Write + Seek> Read for Window<F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.remaining(buf.len());
        if n == 0 {
            return Ok(0);
        }
        self.seek_inner()?;
        let got = self.inner.read(&mut buf[..n])?;
        self.pos_bytes += got as u64;
        Ok(got)
    }
}

impl<F: Read + Write + Seek> Write for Window<F> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = self.remaining(buf.len());
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "write past the end of the partition",
            ));
        }
        let data = &buf[..n];
        if self.skip_zero_writes && data.iter().all(|&b| b == 0) && self.already_zero(n)? {
            self.pos_bytes += n as u64;
            return Ok(n);
        }
        self.seek_inner()?;
        let put = self.inner.write(data)?;
        self.pos_bytes += put as u64;
        Ok(put)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<F: Read + Write + Seek> Seek for Window<F> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let new = match pos {
            SeekFrom::Start(off) => Some(off),
            SeekFrom::End(delta) => self.len_bytes.checked_add_signed(delta),
            SeekFrom::Current(delta) => self.pos_bytes.checked_add_signed(delta),
        };
        let new = new.ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "seek before the partition")
        })?;
        self.pos_bytes = new;
        Ok(new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn reads_and_writes_stay_inside() {
        let mut w = Window::new(Cursor::new(vec![0xaau8; 32]), 8, 16);
        assert_eq!(w.seek(SeekFrom::End(0)).unwrap(), 16);
        w.seek(SeekFrom::Start(12)).unwrap();
        assert_eq!(w.write(&[1, 2, 3, 4, 5, 6]).unwrap(), 4);
        assert_eq!(w.write(&[7]).unwrap_err().kind(), io::ErrorKind::WriteZero);
        let mut all = Vec::new();
        w.seek(SeekFrom::Start(0)).unwrap();
        w.read_to_end(&mut all).unwrap();
        assert_eq!(all.len(), 16);
        assert_eq!(&all[12..], &[1, 2, 3, 4]);
        assert!(w.seek(SeekFrom::Current(-100)).is_err());
        let disk = w.into_inner().into_inner();
        assert_eq!(&disk[..8], &[0xaa; 8]);
        assert_eq!(&disk[20..24], &[1, 2, 3, 4]);
        assert_eq!(&disk[24..], &[0xaa; 8]);
    }

    #[test]
    fn sparse_skips_only_zero_over_zero() {
        let mut disk = vec![0u8; 64];
        disk[40] = 9;
        let mut w = Window::sparse(Cursor::new(disk), 0, 64);
        // Zeros over zeros: skipped, but the position moves on.
        w.write_all(&[0; 16]).unwrap();
        assert_eq!(w.stream_position().unwrap(), 16);
        // Zeros over data: written.
        w.seek(SeekFrom::Start(32)).unwrap();
        w.write_all(&[0; 16]).unwrap();
        // Data: written.
        w.write_all(&[5]).unwrap();
        let disk = w.into_inner().into_inner();
        assert_eq!(disk[40], 0);
        assert_eq!(disk[48], 5);
    }
}
