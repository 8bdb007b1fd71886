/* DirectUploadWidget: the file picked goes straight to the bucket, by PUT to a signed link
   (docs/direct-uploads.md), with its progress in a <progress> as on the admin's bucket page.
   A dropped connection, or a server that was not ready, is resumed from the bytes the bucket holds
   (HEAD gives Upload-Offset); the form then submits only the signed result held in the hidden input. */
'use strict';
{
    const ATTEMPTS = 6;  // requests for one file before giving up; the wait between them grows

    function setUp(box) {
        const input = box.querySelector('input[type=file]');
        const result = box.querySelector('input[type=hidden]');
        const progress = box.querySelector('progress');
        const status = box.querySelector('.nats-upload-status');
        let busy = false;

        function show(sent, size) {
            progress.max = size || 1;
            progress.value = size ? sent : 1;
            status.textContent = Math.floor(100 * progress.value / progress.max) + ' % sent';
        }

        function fail(message) {
            busy = false;
            status.textContent = message;
        }

        function finished(answer) {
            busy = false;
            result.value = answer.result;
            progress.max = 1;
            progress.value = 1;
            status.textContent = 'Uploaded: ' + answer.name;
        }

        function send(file, url, offset, attempts) {
            const request = new XMLHttpRequest();
            request.open('PUT', url);
            request.setRequestHeader('Content-Type', file.type || 'application/octet-stream');
            request.setRequestHeader('Upload-Offset', String(offset));
            request.setRequestHeader('Upload-Length', String(file.size));
            request.upload.addEventListener('progress', function(event) {
                show(offset + event.loaded, file.size);
            });
            request.addEventListener('load', function() {
                if (request.status === 201) {
                    finished(JSON.parse(request.responseText));
                } else if ((request.status === 409 || request.status === 204 || request.status >= 500) && attempts > 1) {
                    resume(file, url, attempts - 1);  // not where it stood, or the store was busy: ask again
                } else {
                    fail(request.responseText || ('The upload failed: ' + request.status + '.'));
                }
            });
            request.addEventListener('error', function() {
                if (attempts > 1) {
                    resume(file, url, attempts - 1);
                } else {
                    fail('The upload failed: the connection to the server was lost.');
                }
            });
            request.send(file.slice(offset));
        }

        function resume(file, url, attempts) {
            status.textContent = 'Connection lost; resuming…';
            window.setTimeout(function() {
                fetch(url, {method: 'HEAD', cache: 'no-store'}).then(function(answer) {
                    if (answer.status === 403) {
                        fail('The upload link has expired: pick the file again.');
                    } else if (!answer.ok) {
                        throw new Error(String(answer.status));
                    } else {
                        send(file, url, parseInt(answer.headers.get('Upload-Offset'), 10) || 0, attempts);
                    }
                }).catch(function() {
                    if (attempts > 1) {
                        resume(file, url, attempts - 1);
                    } else {
                        fail('The upload failed: the server cannot be reached.');
                    }
                });
            }, 500 * (ATTEMPTS - attempts + 1));
        }

        function start(file) {
            const limit = parseInt(box.dataset.maxSize, 10);
            if (file.size > limit) {  // the server would refuse it (413): say so before a byte is sent
                result.value = '';
                fail('This file is ' + file.size + ' bytes; at most ' + limit + ' are allowed.');
                return;
            }
            busy = true;
            result.value = '';
            progress.hidden = false;
            show(0, file.size);
            fetch(box.dataset.prepare, {
                method: 'POST',
                headers: {'Content-Type': 'application/json'},
                body: JSON.stringify({ticket: box.dataset.ticket, filename: file.name}),
            }).then(function(answer) {
                return answer.ok ? answer.json() : answer.text().then(function(text) { throw new Error(text); });
            }).then(function(answer) {
                send(file, answer.url, 0, ATTEMPTS);
            }).catch(function(error) {
                fail(error.message || 'The upload could not start.');
            });
        }

        input.addEventListener('change', function() {
            if (input.files.length) {
                start(input.files[0]);
            }
        });
        if (input.form) {
            input.form.addEventListener('submit', function(event) {
                if (busy) {
                    event.preventDefault();
                    status.textContent = 'Wait for the upload to finish, then save.';
                }
            });
        }
    }

    document.addEventListener('DOMContentLoaded', function() {
        document.querySelectorAll('.nats-direct-upload').forEach(setUp);
    });
}
