/* The bucket page's upload form, sent with XMLHttpRequest so that the browser's progress shows in a <progress>.
   Django answers 400 to a request with more than DATA_UPLOAD_MAX_NUMBER_FILES files (the form's data-max-files):
   many files go in batches under it, one after the other, each saying which it is ("2/3"). */
'use strict';
{
    function batches(files, limit) {
        const size = limit > 0 ? limit : files.length;
        const found = [];
        for (let start = 0; start < files.length; start += size) {
            found.push(files.slice(start, start + size));
        }
        return found;
    }

    function bytes(files) {
        return files.reduce((sum, file) => sum + file.size, 0);
    }

    function send(form) {
        const progress = form.querySelector('progress');
        const status = form.querySelector('.nats-upload-status');
        const button = form.querySelector('input[type=submit]');
        const input = form.querySelector('input[type=file]');
        const files = Array.from(input.files);
        const groups = batches(files, parseInt(form.dataset.maxFiles, 10));
        const total = bytes(files) || 1;
        let sent = 0;  // the bytes of the batches sent before this one

        function fail(message) {
            status.textContent = message;
            button.disabled = false;
        }

        function sendBatch(index) {
            const group = groups[index];
            const size = bytes(group);
            const request = new XMLHttpRequest();
            request.open('POST', form.action);
            request.setRequestHeader('X-Requested-With', 'XMLHttpRequest');  // answered with JSON
            request.upload.addEventListener('progress', function(event) {
                if (event.lengthComputable) {
                    progress.max = total;
                    progress.value = event.loaded >= event.total ? sent + size : sent + size * event.loaded / event.total;
                    status.textContent = Math.floor(100 * progress.value / total) + ' % sent';
                }
            });
            request.upload.addEventListener('load', function() {
                if (index === groups.length - 1) {
                    progress.removeAttribute('value');  // indeterminate: Django now stores the files in NATS
                    status.textContent = 'Storing in the bucket…';
                }
            });
            request.addEventListener('load', function() {
                let answer = {};
                try {
                    answer = JSON.parse(request.responseText);
                } catch (error) {
                    answer = {error: 'The server answered ' + request.status + ' ' + request.statusText + '.'};
                }
                if (!answer.redirect) {
                    fail(answer.error || 'The upload failed.');
                } else if (index < groups.length - 1) {
                    sent += size;
                    sendBatch(index + 1);
                } else {
                    window.location.assign(answer.redirect);  // the page, with what was stored in its messages
                }
            });
            request.addEventListener('error', function() {
                fail('The upload failed: the connection to the server was lost.');
            });
            const data = new FormData(form);
            data.delete(input.name);
            group.forEach(file => data.append(input.name, file));
            if (groups.length > 1) {
                data.append('batch', (index + 1) + '/' + groups.length);
            }
            request.send(data);
        }

        button.disabled = true;
        progress.hidden = false;
        progress.value = 0;
        status.textContent = '0 % sent';
        sendBatch(0);
    }

    document.addEventListener('DOMContentLoaded', function() {
        const form = document.getElementById('nats-upload');
        if (form) {
            form.addEventListener('submit', function(event) {
                event.preventDefault();
                send(form);
            });
        }
    });
}
