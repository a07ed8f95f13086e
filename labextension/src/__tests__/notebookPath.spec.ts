import { describe, expect, it } from 'vitest';

import { notebookPathProblem } from '../notebookPath';

describe('notebookPathProblem', () => {
  it('accepts plain relative notebook paths', () => {
    for (const path of ['a.ipynb', 'work/q1/report.ipynb', 'my notes.ipynb']) {
      expect(notebookPathProblem(path)).toBeNull();
    }
  });

  it('refuses paths a kernel could report to open something else', () => {
    for (const path of [
      '',
      '../secret.ipynb',
      'work/../../x.ipynb',
      './a.ipynb',
      'a//b.ipynb',
      'a/b.ipynb/',
      '/etc/passwd.ipynb',
      '//host/a.ipynb',
      '..\\a.ipynb',
      'C:a.ipynb',
      'RTC:a.ipynb',
      'http://evil.example/a.ipynb',
      'javascript:alert(1)//.ipynb',
      '.bashrc',
      'notes.py',
      'a.ipynb\u202e',
      'a\rb.ipynb'
    ]) {
      expect(notebookPathProblem(path), path).not.toBeNull();
    }
  });
});
